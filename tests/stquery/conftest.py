"""The query engine under test: the spatio-temporal app of the data-platform fixtures.

Query tests write their hand-made fixes and entities straight through the store's write path
(`SpatioTemporalStore.write_observations` / `write_entities`, the code the NATS consumers run),
which keeps each case exact and fast; the incremental stay-point test goes through the real
ingestion API and NATS instead. Each module uses datasets of its own.
"""

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from data_platform.conftest import (  # noqa: F401  (fixtures shared with the platform tests)
    gps_dataset,
    ingestion,
    issuer,
    spatiotemporal,
)

from cityos_contracts.records import Entity, EntityBatch, ObservationBatch
from cityos_kit.bus import Delivery
from cityos_spatiotemporal.store import SpatioTemporalStore

# A fixed local frame in the demo city: metres east/north of ORIGIN -> lon/lat.
ORIGIN = (120.90, 32.00)
M_PER_DEG_LON = 111_320.0 * 0.848048  # cos(32°)
M_PER_DEG_LAT = 110_574.0


def at(east_m: float, north_m: float) -> tuple[float, float]:
    return ORIGIN[0] + east_m / M_PER_DEG_LON, ORIGIN[1] + north_m / M_PER_DEG_LAT


@pytest.fixture(scope="session")
async def store(database_url: str) -> AsyncIterator[SpatioTemporalStore]:
    """The store on this run's database (its schema is migrated by the spatiotemporal app)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4,
                                     server_settings={"search_path": "spatiotemporal,public"})
    assert pool is not None
    yield SpatioTemporalStore(pool)
    await pool.close()


@pytest.fixture(scope="session")
async def st(spatiotemporal: Any, store: SpatioTemporalStore) -> Any:  # noqa: F811
    """The spatio-temporal client, once its migrations have run (the store needs the tables)."""
    return spatiotemporal


def fixes_batch(dataset: str, rows: Sequence[tuple[str, datetime, float, float]],
                speed: float | None = None) -> ObservationBatch:
    return ObservationBatch(
        batch_id=f"test-{dataset}-{uuid.uuid4().hex}", dataset=dataset, version=1, owner="JTJ",
        subject=[r[0] for r in rows],
        ts=[r[1] for r in rows], lon=[r[2] for r in rows], lat=[r[3] for r in rows],
        speed_kmh=[speed] * len(rows) if speed is not None else [])


async def write_fixes(store: SpatioTemporalStore, dataset: str,
                      rows: Sequence[tuple[str, datetime, float, float]],
                      speed: float | None = None) -> None:
    batch = fixes_batch(dataset, rows, speed)
    await store.write_observations([Delivery(batch, SimpleNamespace(headers=None),  # type: ignore[arg-type]
                                             f"obs.{dataset}")])


async def write_entities(store: SpatioTemporalStore, dataset: str, entities: list[Entity],
                         batch_id: str | None = None) -> None:
    await store.write_entities(EntityBatch(
        batch_id=batch_id or f"ent-{dataset}-{uuid.uuid4().hex}", dataset=dataset,
        version=1, owner="YJJ", entities=entities))


def entity(entity_id: str, lon: float, lat: float, category: str | None = None,
           valid_from: datetime = datetime(2020, 1, 1, tzinfo=UTC), name: str | None = None,
           **attrs: Any) -> Entity:
    return Entity(entity_id=entity_id, name=name or entity_id, category=category,
                  geometry={"type": "Point", "coordinates": [lon, lat]}, valid_from=valid_from,
                  attrs=attrs)


def track(subject: str, start: datetime, points: Sequence[tuple[float, float]],
          every_s: float = 30.0) -> list[tuple[str, datetime, float, float]]:
    """Fixes every `every_s` seconds at the given (east m, north m) points."""
    return [(subject, start + timedelta(seconds=i * every_s), *at(x, y))
            for i, (x, y) in enumerate(points)]


def drive(a: tuple[float, float], b: tuple[float, float], step_m: float
          ) -> list[tuple[float, float]]:
    """Points from a towards b (b excluded), `step_m` apart."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    n = max(1, int((dx * dx + dy * dy) ** 0.5 // step_m))
    return [(a[0] + dx * i / n, a[1] + dy * i / n) for i in range(n)]


def stay(p: tuple[float, float], fixes: int, jitter_m: float = 5.0) -> list[tuple[float, float]]:
    """`fixes` points around p, within jitter_m (GPS noise of a parked vehicle)."""
    return [(p[0] + jitter_m * ((i * 7) % 5 - 2) / 2, p[1] + jitter_m * ((i * 3) % 5 - 2) / 2)
            for i in range(fixes)]
