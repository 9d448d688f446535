"""The spatio-temporal service's HTTP API: what is stored, and the query engine (queries/)."""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings
from cityos_spatiotemporal.consumers import start_consumers
from cityos_spatiotemporal.queries import http as queries
from cityos_spatiotemporal.queries.responders import start_responders
from cityos_spatiotemporal.queries.stays import StayTracker
from cityos_spatiotemporal.store import SpatioTemporalStore

SCHEMA = "spatiotemporal"
READ = scope("stquery:read")
MIGRATIONS = Path(__file__).parent / "migrations"


def _features(rows: list[Any], id_key: str) -> dict[str, Any]:
    """A GeoJSON FeatureCollection from rows with a `geometry` GeoJSON text column."""
    features = []
    for row in rows:
        props = {k: v for k, v in dict(row).items() if k != "geometry"}
        if isinstance(props.get("attrs"), str):
            props["attrs"] = msgspec.json.decode(props["attrs"])
        geometry = msgspec.json.decode(row["geometry"]) if row["geometry"] else None
        features.append({"type": "Feature", "id": row[id_key], "geometry": geometry,
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


@get("/observations/count", tags=["observations"], opt=READ)
async def observation_count(state: State, dataset: str | None = None) -> dict[str, int]:
    """How many observations are stored (of one dataset, if given)."""
    return {"count": await state.store.observation_count(dataset)}


@get("/datasets/{dataset:str}/subjects/{subject:str}/latest", tags=["observations"], opt=READ)
async def latest_position(dataset: str, subject: str, state: State) -> dict[str, Any]:
    """A vehicle's or sensor's newest stored observation."""
    row: dict[str, Any] | None = await state.store.latest(dataset, subject)
    if row is None:
        raise NotFoundException(detail=f"no observation of `{subject}` in `{dataset}`")
    if isinstance(row.get("attrs"), str):
        row["attrs"] = msgspec.json.decode(row["attrs"])
    return row


@get("/datasets/{dataset:str}/entities", tags=["entities"], opt=READ, media_type="application/geo+json")
async def entities(
    dataset: str, state: State, at: datetime | None = None, category: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=10000)] = 1000, after: str | None = None,
) -> dict[str, Any]:
    """Entities as GeoJSON, as they were at `at` (default now), in `entity_id` order; the next
    page starts `after` the last id of a full one."""
    return _features(await state.store.entities(dataset, at, category, limit, after),
                     "entity_id")


@get("/datasets/{dataset:str}/entities/{entity_id:str}/history", tags=["entities"], opt=READ,
     media_type="application/geo+json")
async def entity_history(dataset: str, entity_id: str, state: State) -> dict[str, Any]:
    """Every state the entity has had (an enterprise that closed keeps its past)."""
    rows = await state.store.entity_history(dataset, entity_id)
    if not rows:
        raise NotFoundException(detail=f"no entity `{entity_id}` in `{dataset}`")
    return _features(rows, "entity_id")


@get("/divisions", tags=["city"], opt=READ, media_type="application/geo+json")
async def divisions(state: State, level: str | None = None) -> dict[str, Any]:
    """The city's districts and streets as GeoJSON."""
    return _features(await state.store.divisions(level), "code")


@get("/units", tags=["city"], opt=READ)
async def units(state: State) -> list[dict[str, Any]]:
    """The bodies that receive work: departments, district branches, street offices."""
    return [dict(r) for r in await state.store.units()]


ROUTES = [observation_count, latest_position, entities, entity_history, divisions, units,
          *queries.ROUTES]


def build_app(settings: Settings, auth: AuthPlugin | None = None) -> Litestar:
    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        store = SpatioTemporalStore(pool)
        await store.load_city(City(settings.city_dir))
        tracker = StayTracker(pool)
        app.state.update(store=store, bus=bus, stay_tracker=tracker)
        start_consumers(bus, store, tracker)
        await start_responders(bus, pool)

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=ROUTES, start=start,
        auth=auth, title="CityOS spatio-temporal service",
        description="The PostGIS store of observations, entities and media, and its queries.",
    )
