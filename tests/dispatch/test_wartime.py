"""Wartime mode: an emergency over a polygon raises the priority of the open cases inside and
sends new ones to the emergency command; its resources are listed and given orders."""

from datetime import datetime
from typing import Any

from data_platform.conftest import (  # noqa: F401  (the engine answers the box select)
    issuer,
    spatiotemporal,
)
from dispatch.conftest import (
    FIELD_STAFF,
    Watcher,
    accepted_case,
    assignment,
    eventually,
    spot,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer

D = 0.004  # half the polygon's side, degrees


def square(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[
        [lon - D, lat - D], [lon + D, lat - D], [lon + D, lat + D], [lon - D, lat + D],
        [lon - D, lat - D]]]}


async def test_an_emergency_takes_over_its_area(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher,
        spatiotemporal: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:  # noqa: F811
    lon, lat = spot()
    before = await accepted_case(events, "旁边工地灰尘很大没有洒水", (lon, lat), "0503")
    old = await assignment(dispatch, before)
    assert old["priority"] == "normal"
    worker = token(events_issuer, unit=old["lead"], scopes=FIELD_STAFF, sub=f"w-{before}")
    await dispatch.post("/staff/me/duty", headers=worker,
                        json={"on_duty": True, "lon": lon + 0.001, "lat": lat})

    declared = await dispatch.post("/emergencies", json={
        "name": "暴雨内涝", "polygon": square(lon, lat), "lead": "YJJ",
        "assisting": ["SWJ", "XFZD"], "priority": "urgent"})
    assert declared.status_code == 201, declared.text
    emergency = declared.json()
    assert emergency["cases_raised"] >= 1
    raised = (await dispatch.get(f"/assignments/{before}")).json()
    assert raised["priority"] == "urgent" and raised["emergency_id"] == emergency["emergency_id"]
    # 0503 gives 60 min to accept; urgent caps it at 10.
    start = datetime.fromisoformat(raised["dispatched_at"])
    assert (datetime.fromisoformat(raised["accept_due"]) - start).total_seconds() == \
        __import__("pytest").approx(10 * 60 * 0.002, abs=1e-3)
    await eventually(lambda: _async("priority_raised" in {
        e.kind for e in watcher.dispatch_events(before)}))

    inside = await accepted_case(events, "积水已经没过膝盖，车都熄火了",
                                 (lon + 0.001, lat + 0.001), "0701")
    new = await assignment(dispatch, inside)
    assert (new["lead"], new["assisting"], new["priority"]) == ("YJJ", ["SWJ", "XFZD"], "urgent")
    assert new["emergency_id"] == emergency["emergency_id"] and new["rule_id"] is None
    outside = await accepted_case(events, "积水已经没过膝盖，车都熄火了", spot(), "0701")
    assert (await assignment(dispatch, outside))["lead"] == "SWJ"

    found = (await dispatch.get(f"/emergencies/{emergency['emergency_id']}/resources")).json()
    assert found["selection_error"] is None and found["selection"]["type"] == "FeatureCollection"
    assert {before, inside} <= {c["case_id"] for c in found["cases"]}
    assert f"w-{before}" in {s["staff_id"] for s in found["staff"]}
    order = await dispatch.post(f"/emergencies/{emergency['emergency_id']}/tasks", json={
        "staff_ids": [f"w-{before}"], "text": "到路口设置警示牌", "case_id": inside})
    assert order.status_code == 201 and order.json()[0]["emergency_id"] == \
        emergency["emergency_id"]
    mine = (await dispatch.get("/staff/me/tasks", headers=worker)).json()
    assert "到路口设置警示牌" in {t["text"] for t in mine}
    done = await dispatch.post(f"/staff/me/tasks/{order.json()[0]['task_id']}/done",
                               headers=worker)
    assert done.status_code == 200 and done.json()["state"] == "done"

    ended = await dispatch.post(f"/emergencies/{emergency['emergency_id']}/end")
    assert ended.status_code == 200 and ended.json()["ended_at"]
    after = await accepted_case(events, "路边自来水管爆了，水一直往外冒",
                                (lon - 0.002, lat - 0.002), "0702")
    assert (await assignment(dispatch, after))["lead"] == "SWJ"
    late = await dispatch.post(f"/emergencies/{emergency['emergency_id']}/tasks", json={
        "staff_ids": [f"w-{before}"], "text": "x"})
    assert late.status_code == 422


async def test_bad_emergencies_are_refused(dispatch: AsyncTestClient[Any]) -> None:
    bowtie = {"type": "Polygon", "coordinates": [[[120.8, 32.0], [120.9, 32.1], [120.9, 32.0],
                                                  [120.8, 32.1], [120.8, 32.0]]]}
    for body in ({"name": "x", "polygon": bowtie},
                 {"name": "x", "polygon": {"type": "Point", "coordinates": [120.8, 32.0]}},
                 {"name": "x", "polygon": square(120.8, 32.0), "lead": "NOPE"}):
        response = await dispatch.post("/emergencies", json=body)
        assert response.status_code == 422, response.text
    assert (await dispatch.get("/emergencies/987654")).status_code == 404
    assert (await dispatch.get("/emergencies/987654/resources")).status_code == 404


async def _async(value: Any) -> Any:
    return value
