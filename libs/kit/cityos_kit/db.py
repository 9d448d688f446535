"""Postgres: one pool per service, confined to the service's own schema, and its migrations.

A service's migrations are plain SQL files `NNN_name.sql` in its package; each runs once, in
order, in a transaction, under an advisory lock so that replicas starting together do not race.
"""

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry.trace import Span, SpanKind

from cityos_kit.config import Settings
from cityos_kit.telemetry import logger, tracer

log = logger("cityos.db")
_tracer = tracer("cityos.db")


async def create_pool(settings: Settings, schema: str, **kwargs: Any) -> asyncpg.Pool:
    """A pool whose connections see the service's schema first (then `public` for PostGIS)."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=kwargs.pop("min_size", 1),
        max_size=kwargs.pop("max_size", 8),
        server_settings={"search_path": f"{schema},public", "application_name": settings.service},
        **kwargs,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, schema: str, directory: Path) -> list[str]:
    """Apply the not-yet-applied `*.sql` files of `directory` to `schema`; returns their names."""
    lock_key = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch(
                f'SELECT name FROM "{schema}".schema_migrations')}
            for path in sorted(directory.glob("*.sql")):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)', path.name)
                applied.append(path.name)
                log.info("migration_applied", schema=schema, migration=path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)
    return applied


@contextlib.contextmanager
def span(operation: str, table: str) -> Iterator[Span]:
    """A client span around one database operation, child of the current trace."""
    with _tracer.start_as_current_span(
        f"db {operation} {table}", kind=SpanKind.CLIENT,
        attributes={"db.system": "postgresql", "db.operation": operation, "db.sql.table": table},
    ) as current:
        yield current


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT true"))
    except Exception:
        return False
