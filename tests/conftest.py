"""Test fixtures: every run gets its own database and its own NATS namespace, removed after.

Tests talk to the real Postgres/PostGIS and NATS JetStream (never mocks). Point them elsewhere
with CITYOS_TEST_ADMIN_DATABASE_URL and CITYOS_NATS_URL.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import nats
import pytest

from cityos_kit.config import Settings, load_settings

ADMIN_URL = os.environ.get(
    "CITYOS_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def run_id() -> str:
    return RUN_ID


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"cityos_test_{RUN_ID}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def nats_prefix() -> AsyncIterator[str]:
    prefix = f"test{RUN_ID}"
    yield prefix
    nc = await nats.connect(os.environ.get("CITYOS_NATS_URL", "nats://127.0.0.1:4222"))
    js = nc.jetstream()
    for name in await js.streams_info():
        if name.config.name and name.config.name.startswith(prefix.upper() + "_"):
            await js.delete_stream(name.config.name)
    await nc.close()


@pytest.fixture(scope="session")
def make_settings(database_url: str, nats_prefix: str) -> Callable[..., Settings]:
    """Settings for a service under test: this run's database and namespace."""

    def make(service: str, **overrides: Any) -> Settings:
        base = load_settings(service)
        return replace(base, database_url=database_url, nats_prefix=nats_prefix, **overrides)

    return make
