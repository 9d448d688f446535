"""Who may do what on the data platform: every route declares a scope and enforces it, and a
department sees and pushes only its own datasets."""

import re
from typing import Any

from data_platform.conftest import STEWARD_SCOPES
from data_platform.test_ingestion import fix, ndjson

from cityos_kit.auth import LocalIssuer, undeclared_routes

PATH_VALUES = {"name": "test_gps", "dataset": "test_gps", "subject": "SPD-1",
               "entity_id": "E-1", "batch_id": "no-such-batch"}


def operations(client: Any) -> list[tuple[str, str]]:
    spec = client.app.openapi_schema.to_schema()
    found = []
    for path, item in spec["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
        found += [(method.upper(), url) for method in item if method in ("get", "post")]
    return found


async def call(client: Any, method: str, url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {"Authorization": ""}
    body = b"[]" if method == "POST" else None
    response = await client.request(method, url, content=body, headers={
        **headers, "content-type": "application/json"})
    return int(response.status_code)


async def test_every_route_declares_and_enforces_its_scope(
        ingestion: Any, spatiotemporal: Any, issuer: LocalIssuer,
        gps_dataset: dict[str, Any]) -> None:
    no_scope = issuer.token(unit="CMD", scopes=("review:read",))
    right = issuer.token(unit="CMD", scopes=STEWARD_SCOPES)
    for client in (ingestion, spatiotemporal):
        assert undeclared_routes(client.app) == []
        ops = operations(client)
        assert len(ops) >= 6
        for method, url in ops:
            assert await call(client, method, url, None) == 401, (method, url)
            assert await call(client, method, url, no_scope) == 403, (method, url)
            status = await call(client, method, url, right)
            assert status not in (401, 403) and status < 500, (method, url, status)


async def test_a_department_works_only_on_its_own_datasets(
        ingestion: Any, issuer: LocalIssuer, gps_dataset: dict[str, Any]) -> None:
    police = issuer.token(unit="GAJ", scopes=STEWARD_SCOPES)
    transport = issuer.token(unit="JTJ", scopes=STEWARD_SCOPES)
    body = ndjson([fix("OWN-1", 1)])
    for token, expected in ((police, 403), (transport, 200)):
        headers = {"Authorization": f"Bearer {token}", "content-type": "application/x-ndjson"}
        pushed = await ingestion.post("/datasets/test_gps/records", content=body, headers=headers)
        letters = await ingestion.get("/datasets/test_gps/dead-letters", headers=headers)
        assert (pushed.status_code, letters.status_code) == (expected, expected)
    listed = await ingestion.get("/datasets", headers={"Authorization": f"Bearer {police}"})
    assert "test_gps" not in {d["name"] for d in listed.json()}
    # A token narrowed to one dataset pushes to that one only.
    narrowed = issuer.token(unit="JTJ", scopes=("ingest:write:other",))
    denied = await ingestion.post("/datasets/test_gps/records", content=body, headers={
        "Authorization": f"Bearer {narrowed}", "content-type": "application/x-ndjson"})
    assert denied.status_code == 403 and "ingest:write" in denied.json()["detail"]
