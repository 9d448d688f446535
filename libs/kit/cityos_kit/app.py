"""The one Litestar app factory: health, readiness, Prometheus metrics, OpenAPI, tracing, logs.

A service passes its routes, a lifespan that opens its resources, and readiness checks; every
cross-cutting concern is wired here so it is the same in every service.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar, MediaType, Request, Response, get
from litestar.exceptions import ClientException, HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import ControllerRouterHandler

from cityos_contracts.subjects import streams_of
from cityos_kit import db
from cityos_kit.auth import PUBLIC, AuthPlugin
from cityos_kit.bus import Bus, current_trace_id
from cityos_kit.config import Settings
from cityos_kit.telemetry import logger, setup_telemetry, tracer_provider

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]

log = logger("cityos.app")
PROBE_PATHS = ["/healthz", "/readyz", "/metrics"]


class MetricsController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def _error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """4xx keep their reason; anything else is logged with the trace id and answered 500."""
    if isinstance(exc, HTTPException):
        detail = exc.detail
        if exc.status_code == 413:
            size = request.app.request_max_body_size
            limit = size if isinstance(size, int) else 0
            detail = f"request body is larger than the limit of {limit // (1024 * 1024)} MiB"
        body: dict[str, Any] = {"status_code": exc.status_code, "detail": detail}
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status_code=exc.status_code, headers=exc.headers)
    log.exception("unhandled_error", path=request.url.path)
    return Response(
        {"status_code": 500, "detail": "internal error", "trace_id": current_trace_id()},
        status_code=500,
    )


async def _reject_nul(request: Request[Any, Any, Any]) -> None:
    """Postgres text cannot hold NUL: say so up front instead of failing in the database."""
    if "\x00" in request.scope["path"] or b"%00" in request.scope["query_string"]:
        raise ClientException(detail="NUL characters are not allowed in the path or query")
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # cached: the handler reads the same bytes
        if b"\x00" in body or b"\\u0000" in body:
            raise ClientException(detail="NUL characters are not allowed in the body")


def create_app(
    settings: Settings,
    *,
    route_handlers: Sequence[ControllerRouterHandler],
    lifespan: Sequence[Lifespan] = (),
    readiness: dict[str, ReadinessCheck] | None = None,
    title: str | None = None,
    description: str = "",
    auth: AuthPlugin | None = None,
    **litestar_options: Any,
) -> Litestar:
    """Every route must declare its scope (`opt=scope(...)`) or `opt=PUBLIC`; `auth` defaults
    to verifying tokens of the city's issuer (tests pass one trusting a local issuer)."""
    setup_telemetry(settings)
    checks = readiness or {}

    @get("/healthz", media_type=MediaType.JSON, include_in_schema=False, sync_to_thread=False,
         opt=PUBLIC)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": settings.service}

    @get("/readyz", media_type=MediaType.JSON, include_in_schema=False, opt=PUBLIC)
    async def readyz() -> Response[dict[str, Any]]:
        results = {name: await check() for name, check in checks.items()}
        ready = all(results.values())
        return Response({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    metrics = PrometheusConfig(app_name=settings.service, prefix="cityos", exclude=PROBE_PATHS)
    # No spans for each ASGI receive/send message: three more per request, and they say
    # nothing the request's own span does not.
    telemetry = OpenTelemetryConfig(tracer_provider=tracer_provider(settings.service),
                                    exclude=PROBE_PATHS, exclude_spans=["receive", "send"])
    return Litestar(
        route_handlers=[healthz, readyz, MetricsController, *route_handlers],
        lifespan=list(lifespan),
        middleware=[metrics.middleware],
        plugins=[OpenTelemetryPlugin(telemetry), auth or AuthPlugin(settings)],
        openapi_config=OpenAPIConfig(
            title=title or f"CityOS {settings.service}", version="1", description=description,
            path="/docs",
        ),
        exception_handlers={Exception: _error_handler},
        before_request=_reject_nul,
        request_max_body_size=settings.max_body_mb * 1024 * 1024,
        **litestar_options,
    )


async def serve(app: Litestar, settings: Settings) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                            log_config=None, access_log=False)
    await uvicorn.Server(config).serve()




ServiceStart = Callable[[Litestar, asyncpg.Pool, Bus], Awaitable[None]]


def create_service_app(
    settings: Settings,
    *,
    schema: str,
    migrations: Path,
    route_handlers: Sequence[ControllerRouterHandler],
    start: ServiceStart,
    title: str,
    description: str = "",
    auth: AuthPlugin | None = None,
    pool_options: dict[str, Any] | None = None,
) -> Litestar:
    """A service with its own Postgres schema and a NATS connection, ready when both are.

    On start-up: open the pool, apply the service's migrations, connect to NATS, declare the
    platform's streams, then `start(app, pool, bus)` puts the service's objects on `app.state`
    and starts its consumers. On shutdown the consumers stop before the pool closes.
    `pool_options` go to `db.create_pool` (asyncpg's pool: size, reset).
    """
    bus = Bus(settings)
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, schema, **(pool_options or {}))
        try:
            await db.migrate(pool, schema, migrations)
            await bus.connect()
            await bus.ensure_streams(streams_of(settings.service))
            pools.append(pool)
            await start(app, pool, bus)
            yield
        finally:
            await bus.close()
            pools.clear()
            await pool.close()

    async def database_ready() -> bool:
        return bool(pools) and await db.ping(pools[0])

    async def nats_ready() -> bool:
        return bus.connected

    return create_app(
        settings, route_handlers=route_handlers, lifespan=[lifespan],
        readiness={"database": database_ready, "nats": nats_ready},
        title=title, description=description, auth=auth,
    )
