"""The screens under test: the whole mesh as processes (see stack.py), people who sign in with
their roles, a hotline client that reports incidents, and Chromium driven by Playwright."""

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from maps.stack import CHROMIUM, CHROMIUM_ARGS, ROOT, Stack, running

OUTPUT = ROOT / "test-output" / "maps"


@dataclass
class City:
    """The running stack, with the people of the tests and a way to report incidents."""

    stack: Stack
    passwords: dict[str, str]
    hotline: tuple[str, str]

    @property
    def maps(self) -> str:
        return self.stack.maps

    def token(self, username: str) -> str:
        return self.stack.token(username, self.passwords[username])

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(username)}"}

    def report(self, text: str, lon: float, lat: float, category: str | None = None,
               minutes_ago: float = 5) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema": "cityos.report.v1", "channel": "hotline_12345", "text": text,
            "reported_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
            "lon": lon, "lat": lat, "idempotency_key": uuid.uuid4().hex,
            "reporter": {"name": "张三", "phone": "13812345678"}}
        if category:
            body["category"] = category
        token = httpx.post(self.stack.urls["identity"] + "/oauth/token",
                           data={"grant_type": "client_credentials"}, auth=self.hotline,
                           timeout=10).json()["access_token"]
        response = httpx.post(self.stack.urls["events"] + "/reports", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, response.text
        receipt: dict[str, Any] = response.json()
        return receipt

    def person(self, username: str, unit: str, roles: list[str]) -> str:
        if username not in self.passwords:
            self.passwords[username] = self.stack.person(username, unit, roles)
        return self.passwords[username]


Factory = Callable[[str], Awaitable[tuple[str, str]]]


@pytest.fixture(scope="session")
async def own_database(database_url: str, nats_prefix: str) -> AsyncIterator[Factory]:
    """A database and NATS namespace per mesh (`await own_database("name")` -> url, prefix):
    each mesh has its own identity service, which bootstraps its own administrator and
    clients (the run's shared database has had its own bootstrap already)."""
    server, run_db = database_url.rsplit("/", 1)
    made: list[tuple[str, str]] = []

    async def make(name: str) -> tuple[str, str]:
        db, prefix = f"{run_db}_{name}", f"{nats_prefix}{name}"
        admin = await asyncpg.connect(f"{server}/postgres")
        await admin.execute(f'CREATE DATABASE "{db}"')
        await admin.close()
        made.append((db, prefix))
        conn = await asyncpg.connect(f"{server}/{db}")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await conn.close()
        return f"{server}/{db}", prefix

    yield make
    admin = await asyncpg.connect(f"{server}/postgres")
    for db, _ in made:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.close()
    nc = await nats.connect(os.environ.get("CITYOS_NATS_URL", "nats://127.0.0.1:4222"))
    js = nc.jetstream()
    prefixes = tuple(p.upper() + "_" for _, p in made)
    for info in await js.streams_info():
        if info.config.name and info.config.name.startswith(prefixes):
            await js.delete_stream(info.config.name)
    await nc.close()


@pytest.fixture(scope="session")
async def city(own_database: Factory) -> AsyncIterator[City]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    url, prefix = await own_database("maps")
    with running(url, prefix, OUTPUT / "logs") as stack:
        passwords = {"admin": stack.secrets["admin"]}
        city = City(stack, passwords, stack.client("12345 hotline (tests)",
                                                    ["cases:report", "cases:read"]))
        city.person("leader", "CMD", ["leader"])
        city.person("steward", "CMD", ["data_steward"])
        yield city


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: ./cityos setup installs Debian's chromium")
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        await instance.close()


def shot(name: str) -> str:
    """Where a screenshot of the test run goes (test-output/maps/, gitignored)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return str(OUTPUT / f"{name}.png")


async def sign_in(page: Any, username: str, password: str) -> None:
    await page.wait_for_selector("form.signin-card input[name=username]")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form.signin-card button[type=submit]")


# Slow machines (CI on 2 cores) get more time for the first live data.
LIVE_TIMEOUT_MS = int(os.environ.get("CITYOS_TEST_LIVE_TIMEOUT_MS", "60000"))
