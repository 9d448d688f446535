"""Field staff: on and off duty, positions to the spatio-temporal engine through ingestion,
the nearest on-duty person of the unit found by the engine's nearest query, my tasks, and an
incident reported from the street into the event hub."""

from typing import Any

import pytest
from data_platform.conftest import (  # noqa: F401  (the data platform, for the nearest query)
    ingestion,
    issuer,
    spatiotemporal,
)
from dispatch.conftest import (
    FIELD_STAFF,
    UNIT_STAFF,
    accepted_case,
    assignment,
    eventually,
    spot,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer

M = 1 / 111_000  # about a metre, in degrees


def person(issuer: LocalIssuer, unit: str, sub: str) -> dict[str, str]:  # noqa: F811
    return token(issuer, unit=unit, scopes=FIELD_STAFF, sub=sub, roles=("field_staff",),
                 kind="person", name=sub)


async def test_the_nearest_on_duty_person_of_the_unit_gets_the_case(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], staff_dataset: None,
        spatiotemporal: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:  # noqa: F811
    lon, lat = spot()
    case_id = await accepted_case(events, "学校门口有流动摊贩占道卖烧烤", (lon, lat), "0201")
    a = await assignment(dispatch, case_id)
    unit, other = a["lead"], "HWC-" + a["lead"].split("-")[1]
    people = {  # who, unit, metres east of the case, on duty
        f"near-{case_id}": (unit, 120, True), f"far-{case_id}": (unit, 900, True),
        f"off-{case_id}": (unit, 30, False), f"alien-{case_id}": (other, 10, True)}
    for sub, (their_unit, east, on_duty) in people.items():
        who = person(events_issuer, their_unit, sub)
        duty = await dispatch.post("/staff/me/duty", headers=who, json={
            "on_duty": on_duty, "lon": lon + east * M, "lat": lat})
        assert duty.status_code == 200 and duty.json()["unit"] == their_unit, duty.text
        moved = await dispatch.post("/staff/me/position", headers=who,
                                    json={"lon": lon + east * M, "lat": lat})
        assert moved.status_code == 202, moved.text

    async def in_the_engine() -> bool:
        response = await spatiotemporal.get(
            f"/datasets/field_staff/subjects/far-{case_id}/latest")
        return response.status_code == 200

    await eventually(in_the_engine, timeout=30)
    chief = token(events_issuer, unit=unit, scopes=UNIT_STAFF, sub="chief")
    task = await dispatch.post(f"/assignments/{case_id}/assign", headers=chief, json={})
    assert task.status_code == 201, task.text
    assert task.json()["staff_id"] == f"near-{case_id}"
    assert 100 < task.json()["distance_m"] < 140
    mine = (await dispatch.get("/staff/me/tasks",
                               headers=person(events_issuer, unit, f"near-{case_id}"))).json()
    assert [t["case_id"] for t in mine] == [case_id] and mine[0]["lon"] == pytest.approx(lon)
    assert (await dispatch.get(f"/assignments/{case_id}")).json()["staff_id"] == \
        f"near-{case_id}"
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    assert history[-1]["kind"] == "noted" and f"near-{case_id}" in history[-1]["reason"]

    # Named: someone of another unit is refused; the far colleague takes it over.
    alien = await dispatch.post(f"/assignments/{case_id}/assign", headers=chief,
                                json={"staff_id": f"alien-{case_id}"})
    assert alien.status_code == 404
    named = await dispatch.post(f"/assignments/{case_id}/assign", headers=chief,
                                json={"staff_id": f"far-{case_id}"})
    assert named.status_code == 201 and named.json()["staff_id"] == f"far-{case_id}"
    assert (await dispatch.get("/staff/me/tasks",
                               headers=person(events_issuer, unit, f"near-{case_id}"))
            ).json() == []
    staff = (await dispatch.get("/staff", headers=chief, params={"on_duty": "true"})).json()
    assert {s["staff_id"] for s in staff} >= {f"near-{case_id}", f"far-{case_id}"}
    assert f"off-{case_id}" not in {s["staff_id"] for s in staff}
    # Nobody on duty within 50 m: a clear refusal.
    none = await dispatch.post(f"/assignments/{case_id}/assign", headers=chief,
                               json={"max_distance_m": 50})
    assert none.status_code == 409 and "on-duty" in none.json()["detail"]


async def test_a_gateway_reports_only_its_own_people(
        dispatch: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:
    gateway = token(events_issuer, unit="CGJ-329902", scopes=FIELD_STAFF, sub="gw")
    other = token(events_issuer, unit="CGJ-329903", scopes=FIELD_STAFF, sub="gw2")
    assert (await dispatch.post("/staff/w-1/duty", headers=gateway,
                                json={"on_duty": True, "lon": 121.0, "lat": 32.1})
            ).status_code == 200
    assert (await dispatch.post("/staff/w-1/position", headers=gateway,
                                json={"lon": 121.001, "lat": 32.1})).status_code == 202
    assert (await dispatch.post("/staff/w-1/position", headers=other,
                                json={"lon": 121.001, "lat": 32.1})).status_code == 403
    assert (await dispatch.post("/staff/nobody/position", headers=gateway,
                                json={"lon": 121.001, "lat": 32.1})).status_code == 404
    batch = await dispatch.post("/staff/positions", headers=gateway, json={"positions": [
        {"staff_id": "w-1", "lon": 121.002, "lat": 32.1}] * 3})
    assert batch.status_code == 202 and batch.json() == {"accepted": 3}
    foreign = await dispatch.post("/staff/positions", headers=other, json={"positions": [
        {"staff_id": "w-1", "lon": 121.002, "lat": 32.1}]})
    assert foreign.status_code == 403
    naive = await dispatch.post("/staff/w-1/position", headers=gateway,
                                json={"lon": 121.0, "lat": 32.1, "at": "2026-01-01T08:00:00"})
    assert naive.status_code == 400 and "time zone" in naive.json()["detail"]


async def test_the_street_blows_the_whistle(events: AsyncTestClient[Any],
                                            dispatch: AsyncTestClient[Any],
                                            events_issuer: LocalIssuer) -> None:
    lon, lat = spot()
    grid = person(events_issuer, "JD-329901002", "grid-worker-7")
    sent = await dispatch.post("/staff/me/reports", headers=grid, json={
        "text": "巷子里的井盖松动了，车一压就响", "lon": lon, "lat": lat,
        "media": ["s3://photos/manhole.jpg"]})
    assert sent.status_code == 202, sent.text
    key = sent.json()["idempotency_key"]

    async def case() -> dict[str, Any] | None:
        page = (await events.get("/cases", params={"text": "井盖松动"})).json()["items"]
        for item in page:
            detail = (await events.get(f"/cases/{item['case_id']}")).json()
            if any(r["source_ref"] == key for r in detail["reports"]):
                return detail
        return None

    detail = await eventually(case, timeout=20)
    (mine,) = [r for r in detail["reports"] if r["source_ref"] == key]
    assert mine["channel"] == "grid_app" and mine["media"] == ["s3://photos/manhole.jpg"]
