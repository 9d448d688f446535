"""The screens' data with the dispatch service deployed: routing rules, wartime orders to field
staff, and a field worker's steps going through dispatch (deadlines, evidence).

A mesh of its own (its own database and NATS namespace), with dispatch started too.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from maps.conftest import OUTPUT, Factory
from maps.stack import BIN, Stack, running

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (BIN / "cityos-dispatch").exists(), reason="the dispatch service is not installed")]
SQUARE = {"type": "Polygon", "coordinates": [[[120.85, 31.95], [120.95, 31.95], [120.95, 32.05],
                                              [120.85, 32.05], [120.85, 31.95]]]}


@pytest.fixture(scope="module")
async def mesh(own_database: Factory) -> AsyncIterator[Stack]:
    url, prefix = await own_database("dispatch")
    with running(url, prefix, OUTPUT / "logs-dispatch", vehicles=20,
                 with_dispatch=True) as stack:
        yield stack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_routing_rules_come_from_dispatch(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30, headers=admin) as client:
        rules = (await client.get("/api/routing/rules")).json()
        assert any(r["rule"]["category"] == "0101" for r in rules)
        assert (await client.get("/api/services")).json()["dispatch"]


async def test_wartime_order_reaches_the_field_worker(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    worker = bearer(mesh.token("w1", mesh.person("w1", "CGJ-329901", ["field_staff"])))
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        duty = await client.post(mesh.urls["dispatch"] + "/staff/me/duty", headers=worker,
                                 json={"on_duty": True, "lon": 120.9, "lat": 32.0})
        assert duty.status_code == 200, duty.text
        order = await client.post("/api/tasks", headers=admin, json={
            "text": "转移低洼处群众", "staff_ids": ["w1"], "polygon": SQUARE})
        assert order.status_code == 201, order.text
        assert order.json()["emergency"]["lead"] == "YJJ"
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()
        mine = [t for t in tasks["items"] if t.get("task_id")]
        assert [t["title"] for t in mine] == ["转移低洼处群众"]
        done = await client.post(f"/api/field/orders/{mine[0]['task_id']}/done", headers=worker)
        assert done.json()["state"] == "done"


async def test_field_steps_go_through_dispatch(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    hotline = mesh.client("hotline", ["cases:report"])
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        token = (await client.post(mesh.urls["identity"] + "/oauth/token", auth=hotline,
                                   data={"grant_type": "client_credentials"})).json()
        receipt = (await client.post(mesh.urls["events"] + "/reports", headers=bearer(
            token["access_token"]), json={
            "channel": "hotline_12345", "text": "路灯不亮，晚上一片漆黑", "category": "0302",
            "reported_at": datetime.now(UTC).isoformat(), "lon": 120.76, "lat": 32.08})).json()
        case_id = receipt["case_id"]
        for action in ("accept", "dispatch"):
            answer = await client.post(f"/api/cases/{case_id}/{action}", headers=admin,
                                       json={"reason": "ok"})
            assert answer.status_code == 200, answer.text
        unit = answer.json()["case"]["handling_unit"]
        worker = bearer(mesh.token("w2", mesh.person("w2", unit, ["field_staff"])))
        detail: dict[str, Any] = {}
        for _ in range(50):  # dispatch takes the case from the case-event stream
            detail = (await client.get(f"/api/cases/{case_id}", headers=admin)).json()
            if detail["assignment"]:
                break
            await asyncio.sleep(0.2)
        assert detail["assignment"]["lead"] == unit
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()
        assert case_id in [t["case_id"] for t in tasks["items"]]
        accepted = await client.post(f"/api/field/tasks/{case_id}/accept", headers=worker,
                                     json={})
        assert accepted.json()["state"] == "accepted", accepted.text
        handled = await client.post(f"/api/field/tasks/{case_id}/handled", headers=worker,
                                    json={"note": "已更换灯泡", "evidence": ["photo:sha256:ab"]})
        assert handled.json()["evidence"] == ["photo:sha256:ab"], handled.text
        case = (await client.get(f"/api/cases/{case_id}", headers=admin)).json()["case"]
        assert case["status"] == "handled"
