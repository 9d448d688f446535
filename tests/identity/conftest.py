"""The identity service under test: real Postgres schema, real NATS namespace, in-process HTTP."""

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from waiting import eventually  # noqa: F401  (re-exported for the identity tests)

from cityos_identity.app import SCHEMA, build_app
from cityos_identity.service import Identity, IdentityConfig
from cityos_kit.auth import AuthSettings
from cityos_kit.config import Settings
from cityos_kit.db import create_pool

ISSUER = "http://identity.test"
AUTH = AuthSettings(issuer=ISSUER, leeway_s=0, rate_limit_per_minute=100_000)


@pytest.fixture(scope="session")
def bootstrap_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One path for the whole run: identity writes it only on the first start of the run's
    # database, and test modules that import these fixtures get instances of their own.
    return tmp_path_factory.getbasetemp() / "identity-admin-credentials.txt"


@pytest.fixture(scope="session")
async def identity_app(make_settings: Callable[..., Settings],
                       bootstrap_file: Path) -> AsyncIterator[Litestar]:
    app = build_app(make_settings("identity"), auth=AUTH,
                    config=IdentityConfig(bootstrap_file=bootstrap_file))
    yield app


@pytest.fixture(scope="session")
async def client(identity_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(identity_app, base_url=ISSUER) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def identity(client: AsyncTestClient[Litestar], identity_app: Litestar) -> Identity:
    value: Identity = identity_app.state.identity
    return value


@pytest.fixture
async def db_identity(identity: Identity, make_settings: Callable[..., Settings]
                      ) -> AsyncIterator[Identity]:
    """The service's logic on a pool of the test's own loop (the test client runs the app on
    another loop; asyncpg connections belong to one loop)."""
    pool = await create_pool(make_settings("identity"), SCHEMA)
    try:
        yield Identity(pool, identity.keys, identity.city, identity.auth, identity.config,
                       identity.verifier)
    finally:
        await pool.close()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def admin_token(client: AsyncTestClient[Litestar], bootstrap_file: Path) -> str:
    line = next(x for x in bootstrap_file.read_text().splitlines() if x.startswith("admin "))
    password = line.split("password=", 1)[1]
    response = await client.post("/oauth/token", data={
        "grant_type": "password", "username": "admin", "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="session")
async def auditor_token(client: AsyncTestClient[Litestar], admin_token: str) -> str:
    created = await client.post("/people", headers=bearer(admin_token), json={
        "username": "auditor1", "unit": "CMD", "roles": ["auditor"],
        "password": "correct horse battery staple"})
    assert created.status_code == 201, created.text
    response = await client.post("/oauth/token", data={
        "grant_type": "password", "username": "auditor1",
        "password": "correct horse battery staple"})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
