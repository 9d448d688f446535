"""What every benchmark needs around its measurement: a database and NATS namespace of its own,
services that are ready before the clock starts, and a clean machine afterwards."""

import asyncio
import os
import sys
import uuid

import asyncpg
import httpx
import nats

ADMIN = os.environ.get("CITYOS_TEST_ADMIN_DATABASE_URL",
                       "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("CITYOS_NATS_URL", "nats://127.0.0.1:4222")


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


async def wait_ready(url: str, seconds: float = 180) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(seconds / 0.2)):
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


async def create(extensions: tuple[str, ...] = ("postgis",)) -> tuple[str, str, str]:
    """A new database (with the extensions) and NATS prefix: (name, database URL, prefix)."""
    run = uuid.uuid4().hex[:8]
    name, prefix = f"cityos_bench_{run}", f"bench{run}"
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    try:
        for extension in extensions:
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    finally:
        await conn.close()
    return name, url, prefix


async def drop(name: str, prefix: str) -> None:
    """Remove the benchmark's database and every stream of its NATS prefix."""
    admin = await asyncpg.connect(ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefix.upper() + "_"):
            await js.delete_stream(info.config.name)
    await nc.close()
