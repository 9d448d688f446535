"""The identity service's Litestar app and lifespan."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar
from nats.aio.msg import Msg

from cityos_contracts.identity import AuditEvent
from cityos_contracts.subjects import AUDIT_EVENTS
from cityos_identity.api import DEPENDENCIES, ROUTES
from cityos_identity.bootstrap import bootstrap
from cityos_identity.keys import KeyStore
from cityos_identity.service import Identity, IdentityConfig, LocalVerifier
from cityos_kit import db
from cityos_kit.app import create_app
from cityos_kit.auth import SECURITY_STREAMS, AuthPlugin, AuthSettings
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings
from cityos_kit.telemetry import logger

SCHEMA = "identity"
MIGRATIONS = Path(__file__).parent / "migrations"
RETENTION_EVERY_S = 24 * 3600
log = logger("cityos.identity")


async def _retention_loop(identity: Identity) -> None:
    while True:
        try:
            removed = await identity.apply_retention()
            log.info("audit_retention", removed=removed,
                     days=identity.config.audit_retention_days)
        except Exception as exc:
            log.error("audit_retention_failed", error=repr(exc))
        await asyncio.sleep(RETENTION_EVERY_S)


def build_app(settings: Settings, *, auth: AuthSettings | None = None,
              config: IdentityConfig | None = None) -> Litestar:
    auth = auth or AuthSettings.from_env()
    config = config or IdentityConfig.from_env()
    keys = KeyStore(max_token_lifetime_s=config.token_lifetime_s)
    verifier = LocalVerifier(keys, auth)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, SCHEMA)
        bus = Bus(settings)
        retention: asyncio.Task[None] | None = None
        try:
            await db.migrate(pool, SCHEMA, MIGRATIONS)
            keys.pool = pool
            await keys.load()
            verifier.set_jwks(keys.jwks())
            identity = Identity(pool, keys, City(settings.city_dir), auth, config, verifier)
            await bus.connect()
            await bus.ensure_streams(SECURITY_STREAMS)
            identity.bus = bus
            await bootstrap(identity)

            async def keep(event: AuditEvent, _: Msg) -> None:
                await identity.store_audit(event)

            stream = next(s for s in SECURITY_STREAMS if AUDIT_EVENTS in s.subjects)
            bus.consume(stream, "identity-audit", AuditEvent, keep)
            retention = asyncio.create_task(_retention_loop(identity), name="audit-retention")
            app.state.identity = identity
            yield
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            if bus.connected:
                await bus.close()
            await pool.close()

    async def ready() -> bool:
        identity = getattr(app.state, "identity", None)
        return identity is not None and bus_ok(identity) and await db.ping(identity.pool)

    app = create_app(
        settings, route_handlers=ROUTES, lifespan=[lifespan], readiness={"ready": ready},
        title="CityOS identity",
        description="Built-in OAuth 2.0 / OIDC-style token issuer, clients, people, audit log.",
        dependencies=DEPENDENCIES,
        on_app_init=[AuthPlugin(settings, verifier=verifier, auth_settings=auth).on_app_init],
    )
    return app


def bus_ok(identity: Identity) -> bool:
    return identity.bus is not None and identity.bus.connected

