"""The themed-maps service: the web application of the three screens and the data behind it.

It owns no database: the screens' live state is rebuilt from NATS at start-up (case events
replayed from the stream, positions from the next observation batches), and everything else
is asked of the services that own it.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar
from litestar.datastructures import State

from cityos_contracts.subjects import streams_of
from cityos_kit.app import create_app
from cityos_kit.auth import AuthPlugin, AuthSettings
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings
from cityos_maps import board
from cityos_maps.api import board as board_api
from cityos_maps.api import console, field, pages, wartime
from cityos_maps.cases import CaseBoard, category_infos
from cityos_maps.config import MapsSettings, ServiceClient
from cityos_maps.live import Live
from cityos_maps.themes import load_themes, staff_datasets
from cityos_maps.upstream import Upstreams


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              maps_settings: MapsSettings | None = None,
              client: ServiceClient | None = None) -> Litestar:
    options = maps_settings or MapsSettings.from_env()
    city = City(settings.city_dir)
    themes = load_themes(frozenset(board.METRICS),
                         Path(options.themes_dir) if options.themes_dir else None)
    issuer = auth.auth_settings.issuer if auth else AuthSettings.from_env().issuer
    upstreams = Upstreams(options, issuer, client or ServiceClient.from_env())
    live = Live(options, CaseBoard(category_infos(city.categories)), staff_datasets(themes))
    bus = Bus(settings)

    async def boards_for(theme_ids: set[str]) -> dict[str, bytes]:
        ctx = board_api.context(app.state)
        return {t: msgspec.json.encode(await board.compute(ctx, themes[t]))
                for t in theme_ids if t in themes}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await bus.connect()
        try:
            await bus.ensure_streams(streams_of(settings.service))
            live.boards = boards_for
            await live.start(bus)
            yield
        finally:
            await live.stop()
            await bus.close()
            await upstreams.close()

    async def nats_ready() -> bool:
        return bool(bus.connected)

    async def cases_replayed() -> bool:
        replayed: bool = live.replayed.is_set()
        return replayed

    bbox = city.bbox
    state: dict[str, Any] = {
        "live": live, "themes": themes, "upstreams": upstreams,
        "units": {u["id"]: u for u in city.units}, "departments": city.departments,
        "city_json": pages.encode_city(city),
        "bbox": [bbox.west, bbox.south, bbox.east, bbox.north],
    }
    app = create_app(
        settings,
        route_handlers=[*pages.page_routes(options.static_path), *pages.ROUTES,
                        *board_api.ROUTES, *wartime.ROUTES, *console.ROUTES, *field.ROUTES],
        lifespan=[lifespan], readiness={"nats": nats_ready, "cases_replayed": cases_replayed},
        title="CityOS themed maps", auth=auth,
        description="The command center's screens: the overall situation map and thematic "
                    "maps (big screen), the operators' console (middle screen) and the field "
                    "staff's page (small screen), with the data behind them.",
        state=State(state),
    )
    return app
