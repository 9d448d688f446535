"""The kit's enforcement, on a tiny app built like every service: create_app + AuthPlugin."""

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from litestar import Litestar, Request, get, post
from litestar.testing import AsyncTestClient

from cityos_contracts.identity import Principal
from cityos_kit import audit
from cityos_kit.app import create_app
from cityos_kit.auth import (
    PUBLIC,
    AuthPlugin,
    AuthSettings,
    LocalIssuer,
    current_principal,
    require_unit,
    scope,
    undeclared_routes,
)
from cityos_kit.config import Settings

from .conftest import bearer, eventually

ISSUER = LocalIssuer()


@get("/open", opt=PUBLIC, sync_to_thread=False)
def open_route() -> dict[str, str]:
    return {"hello": "anyone"}


@get("/cases", opt=scope("cases:read"), sync_to_thread=False)
def list_cases(request: Request[Principal, Any, Any]) -> dict[str, str]:
    return {"unit": request.user.unit}


@post("/datasets/{dataset:str}/batches", opt=scope("ingest:write", per="dataset"),
      status_code=202, sync_to_thread=False)
def push_batch(dataset: str) -> dict[str, str]:
    return {"accepted": dataset}


@post("/uploads", opt=scope("ingest:write"), status_code=202)
async def upload(request: Request[Any, Any, Any]) -> dict[str, int]:
    return {"bytes": len(await request.body())}


@get("/units/{unit_id:str}/cases/{case_id:int}/reporter", opt=scope("cases:read"))
async def reporter_contact(request: Request[Any, Any, Any], unit_id: str,
                           case_id: int) -> dict[str, str]:
    require_unit(current_principal(request), unit_id)
    await audit.personal_data_read(request, f"case/{case_id}/reporter")
    return {"phone": "138-0000-0000"}


@get("/forgotten", sync_to_thread=False)
def forgotten() -> dict[str, str]:
    return {"oops": "no declaration"}


ROUTES = [open_route, list_cases, push_batch, upload, reporter_contact]


def build(settings: Settings, routes: list[Any], per_minute: int = 1000) -> Litestar:
    plugin = AuthPlugin(settings, verifier=ISSUER.verifier(),
                        auth_settings=AuthSettings(issuer=ISSUER.issuer),
                        rate_limit_per_minute=per_minute)
    return create_app(settings, route_handlers=routes, on_app_init=[plugin.on_app_init])


@pytest.fixture(scope="module")
async def tiny(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = replace(make_settings("tiny"), max_body_mb=1)
    async with AsyncTestClient(build(settings, [*ROUTES, forgotten])) as client:
        yield client


async def test_no_token_is_401(tiny: AsyncTestClient[Litestar]) -> None:
    response = await tiny.get("/cases")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="cityos"')
    garbage = await tiny.get("/cases", headers=bearer("not-a-jwt"))
    assert garbage.status_code == 401 and "malformed" in garbage.json()["detail"]
    foreign = LocalIssuer().token(scopes=("cases:read",))  # signed by a key nobody trusts
    assert (await tiny.get("/cases", headers=bearer(foreign))).status_code == 401


async def test_scopes(tiny: AsyncTestClient[Litestar]) -> None:
    assert (await tiny.get("/open")).status_code == 200
    assert (await tiny.get("/healthz")).status_code == 200
    wrong = await tiny.get("/cases", headers=bearer(ISSUER.token(scopes=("stquery:read",))))
    assert wrong.status_code == 403 and "cases:read" in wrong.json()["detail"]
    right = await tiny.get("/cases", headers=bearer(ISSUER.token(scopes=("cases:read",),
                                                                  unit="CGJ")))
    assert right.status_code == 200 and right.json() == {"unit": "CGJ"}


async def test_dataset_suffixed_scope(tiny: AsyncTestClient[Litestar]) -> None:
    gps_only = bearer(ISSUER.token(scopes=("ingest:write:gps",)))
    every = bearer(ISSUER.token(scopes=("ingest:write",)))
    assert (await tiny.post("/datasets/gps/batches", headers=gps_only)).status_code == 202
    denied = await tiny.post("/datasets/buses/batches", headers=gps_only)
    assert denied.status_code == 403 and "dataset" in denied.json()["detail"]
    assert (await tiny.post("/datasets/buses/batches", headers=every)).status_code == 202


async def test_undeclared_route_fails(tiny: AsyncTestClient[Litestar],
                                      make_settings: Callable[..., Settings]) -> None:
    assert undeclared_routes(tiny.app) == ["GET /forgotten"]
    response = await tiny.get("/forgotten", headers=bearer(ISSUER.token(scopes=("x:y",))))
    assert response.status_code == 500
    assert undeclared_routes(build(make_settings("tiny"), ROUTES)) == []


async def test_unit_scoped_personal_data_is_audited(
        tiny: AsyncTestClient[Litestar], client: AsyncTestClient[Litestar],
        auditor_token: str) -> None:
    url = "/units/CGJ-329901/cases/42/reporter"
    other_unit = bearer(ISSUER.token(sub="dongcheng", unit="CGJ-329902", scopes=("cases:read",)))
    assert (await tiny.get(url, headers=other_unit)).status_code == 403
    handling = bearer(ISSUER.token(sub="beicheng", unit="CGJ-329901", scopes=("cases:read",)))
    assert (await tiny.get(url, headers=handling)).status_code == 200
    command = bearer(ISSUER.token(sub="cmd-op", unit="CMD", scopes=("cases:read",)))
    assert (await tiny.get(url, headers=command)).status_code == 200

    async def read_audited() -> list[dict[str, Any]]:
        page = await client.get("/audit", headers=bearer(auditor_token),
                                params={"actor": "beicheng", "action": "read personal_data"})
        assert page.status_code == 200, page.text
        items: list[dict[str, Any]] = page.json()["items"]
        return items

    items = await eventually(read_audited)
    assert items and items[0]["resource"] == "case/42/reporter"
    assert items[0]["unit"] == "CGJ-329901" and items[0]["service"] == "tiny"


async def test_state_changes_are_audited(tiny: AsyncTestClient[Litestar],
                                         client: AsyncTestClient[Litestar],
                                         auditor_token: str, admin_token: str) -> None:
    token = bearer(ISSUER.token(sub="gps-feeder", unit="JTJ", scopes=("ingest:write:gps",)))
    assert (await tiny.post("/datasets/gps/batches", headers=token)).status_code == 202
    assert (await tiny.post("/datasets/taxi/batches", headers=token)).status_code == 403

    async def audited() -> list[dict[str, Any]]:
        page = await client.get("/audit", headers=bearer(auditor_token),
                                params={"actor": "gps-feeder"})
        items: list[dict[str, Any]] = page.json()["items"]
        return items if len(items) >= 2 else []

    items = await eventually(audited)
    by_path = {i["resource"]: i for i in items}
    ok, denied = by_path["/datasets/gps/batches"], by_path["/datasets/taxi/batches"]
    assert ok["action"] == "POST /datasets/gps/batches" and ok["outcome"] == "success"
    assert ok["status_code"] == 202 and ok["unit"] == "JTJ" and ok["ip"]
    assert denied["outcome"] == "denied" and denied["status_code"] == 403
    # Auditors only: the admin (operator, sre, data steward) may not read the log.
    assert (await client.get("/audit", headers=bearer(admin_token))).status_code == 403


async def test_request_too_large_is_413(tiny: AsyncTestClient[Litestar]) -> None:
    token = bearer(ISSUER.token(scopes=("ingest:write",)))
    small = await tiny.post("/uploads", headers=token, content=b"x" * 1000)
    assert small.status_code == 202 and small.json() == {"bytes": 1000}
    response = await tiny.post("/uploads", headers=token, content=b"x" * (1024 * 1024 + 10))
    assert response.status_code == 413
    assert response.json()["detail"], response.text


async def test_rate_limit_per_client(make_settings: Callable[..., Settings]) -> None:
    async with AsyncTestClient(build(make_settings("limited"), ROUTES, per_minute=3)) as c:
        busy = bearer(ISSUER.token(sub="busy", scopes=("cases:read",)))
        for _ in range(3):
            assert (await c.get("/cases", headers=busy)).status_code == 200
        limited = await c.get("/cases", headers=busy)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["detail"]
        calm = bearer(ISSUER.token(sub="calm", scopes=("cases:read",)))
        assert (await c.get("/cases", headers=calm)).status_code == 200
