"""The data platform under test: ingestion and spatio-temporal apps in this process, talking
through this run's NATS namespace and database."""

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from waiting import eventually  # noqa: F401  (re-exported for the platform tests)

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec
from cityos_ingestion.app import build_app as build_ingestion
from cityos_kit.auth import AuthPlugin, LocalIssuer
from cityos_spatiotemporal.app import build_app as build_spatiotemporal

GPS = DatasetRegistration(
    name="test_gps", title="Test vehicle GPS", owner="JTJ", kind="observation",
    fields=[
        FieldSpec("plate", "string", required=True), FieldSpec("ts", "datetime", required=True),
        FieldSpec("lon", "number", required=True), FieldSpec("lat", "number", required=True),
        FieldSpec("speed", "number", unit="m/s"), FieldSpec("heading", "number"),
        FieldSpec("driver", "string"),
    ],
    mapping=FieldMapping(subject="plate", time="ts", lon="lon", lat="lat", speed="speed",
                         heading="heading"),
)


# The command center's data steward: sees and acts on every department's data.
STEWARD_SCOPES = ("ingest:admin", "ingest:read", "ingest:write", "stquery:read")


@pytest.fixture(scope="session")
def issuer() -> LocalIssuer:
    return LocalIssuer()


def authorised(app: Any, issuer: LocalIssuer, **claims: Any) -> AsyncTestClient[Any]:
    client = AsyncTestClient(app, timeout=60)
    token = issuer.token(**({"unit": "CMD", "scopes": STEWARD_SCOPES} | claims))
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def platform_app(service: str, make_settings: Any, issuer: LocalIssuer) -> Any:
    build = {"ingestion": build_ingestion, "spatiotemporal": build_spatiotemporal}[service]
    settings = make_settings(service, max_body_mb=64)
    # Fuzzing sends thousands of requests a minute: the per-client limit is tested elsewhere.
    return build(settings, auth=AuthPlugin(settings, verifier=issuer.verifier(),
                                           rate_limit_per_minute=1_000_000))


@pytest.fixture(scope="session")
async def ingestion(make_settings: Any, issuer: LocalIssuer
                    ) -> AsyncIterator[AsyncTestClient[Any]]:
    async with authorised(platform_app("ingestion", make_settings, issuer), issuer) as client:
        yield client


@pytest.fixture(scope="session")
async def spatiotemporal(make_settings: Any, issuer: LocalIssuer
                         ) -> AsyncIterator[AsyncTestClient[Any]]:
    async with authorised(platform_app("spatiotemporal", make_settings, issuer),
                          issuer) as client:
        yield client


@pytest.fixture(scope="session")
async def gps_dataset(ingestion: AsyncTestClient[Any]) -> dict[str, Any]:
    response = await ingestion.post("/datasets", content=msgspec.json.encode(GPS),
                                    headers={"content-type": "application/json"})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(client: AsyncTestClient[Any], dataset: str) -> int:
    response = await client.get("/observations/count", params={"dataset": dataset})
    assert response.status_code == 200, response.text
    count: int = response.json()["count"]
    return count


async def stored_of(database_url: str, subject_like: str) -> int:
    """Stored fixes of test_gps subjects matching a LIKE pattern: counts that other tests'
    traffic cannot move."""
    conn = await asyncpg.connect(database_url)
    try:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM spatiotemporal.observations WHERE dataset = 'test_gps'"
            " AND subject LIKE $1", subject_like)
        return n
    finally:
        await conn.close()
