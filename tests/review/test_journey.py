"""Issue 5's journey end to end: two reports of one incident (classified, merged) → accepted →
routed to the district branch → acceptance deadline missed and escalated → handled with
evidence → verified, closed → both reporters told and rating → the review's figures for that
unit exactly as the events say; a unit acting on a case not its own and an illegal transition
are refused with nothing changed; a rebuild from the streams gives the same figures."""

from datetime import datetime, timedelta
from typing import Any

import msgspec
from dispatch.conftest import (
    SCALE,
    UNIT_STAFF,
    Watcher,
    assignment,
    eventually,
    post_report,
    report,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_contracts.dispatch import Feedback
from cityos_kit.auth import LocalIssuer

POINT = (120.8123, 32.1187)  # Beicheng district (329901), street 329901002


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_a_report_from_intake_to_the_review(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        review: AsyncTestClient[Any], watcher: Watcher, events_issuer: LocalIssuer) -> None:
    # 1. One incident, two channels: classified from the text, merged into one case.
    first = await post_report(events, report("学校门口有流动摊贩占道卖烧烤，油烟很大",
                                             POINT, minutes_ago=10))
    assert first["classification"]["category"] == "0201", first["classification"]
    second = await post_report(events, report(
        "学校门口有流动摊贩占道卖烧烤，烟很大", (POINT[0] + 0.0003, POINT[1]),
        channel="hotline_12345",
        minutes_ago=5, reporter={"phone": "13800138000"}))
    assert second["merged"] and second["case_id"] == first["case_id"]
    case_id = first["case_id"]
    case = (await events.get(f"/cases/{case_id}")).json()["case"]
    assert case["status"] == "classified" and case["report_count"] == 2

    # 2. Accepted by the center: dispatch routes it to the district branch by its rule.
    assert (await events.post(f"/cases/{case_id}/accept", json={"reason": "属实"})
            ).status_code == 200
    a = await assignment(dispatch, case_id)
    assert a["lead"] == "CGJ-329901" and a["rule_id"] is not None
    unit = token(events_issuer, unit="CGJ-329901", scopes=UNIT_STAFF, sub="cgj-chen")
    stranger = token(events_issuer, unit="CGJ-329902", scopes=UNIT_STAFF, sub="cgj-zhou")

    # 3. Nobody accepts in time: escalated to the city bureau and the center.
    escalated = await eventually(lambda: _async(
        [e for e in watcher.dispatch_events(case_id) if e.kind == "escalated"]), timeout=15)
    assert escalated[0].escalated_to == ["CGJ", "CMD"] and escalated[0].deadline == "accept"

    async def on_the_case() -> dict[str, Any] | None:
        detail: dict[str, Any] = (await events.get(f"/cases/{case_id}")).json()
        return detail if any(e["kind"] == "escalated" for e in detail["history"]) else None

    # 4. Refusals change nothing: another branch acting, closing an unhandled case.
    version = (await eventually(on_the_case))["case"]["version"]
    assert (await dispatch.post(f"/assignments/{case_id}/accept", headers=stranger, json={})
            ).status_code == 403
    assert (await events.post(f"/cases/{case_id}/close", json={"reason": "结案"})
            ).status_code == 409
    assert (await events.post(f"/cases/{case_id}/start", headers=stranger, json={})
            ).status_code == 403
    assert (await events.get(f"/cases/{case_id}")).json()["case"]["version"] == version

    # 5. The branch accepts late and handles it in time, with evidence.
    for action, body in (("accept", {}), ("handled", {"reason": "已取缔",
                                                      "evidence": ["s3://ev/a.jpg"]})):
        response = await dispatch.post(f"/assignments/{case_id}/{action}", headers=unit,
                                       json=body)
        assert response.status_code == 200, response.text
    # 6. Verified on site, closed by the center; both reporters are told.
    grid = token(events_issuer, unit="JD-329901002", scopes=UNIT_STAFF, sub="grid-1",
                 roles=("field_staff",))
    assert (await events.post(f"/cases/{case_id}/verify", headers=grid, json={})
            ).status_code == 200
    assert (await events.post(f"/cases/{case_id}/close", json={"reason": "已回访"})
            ).status_code == 200

    async def feedback() -> list[Feedback]:
        found = [msgspec.json.decode(d, type=Feedback) for d in watcher.on("")
                 if b"cityos.feedback.v1" in d]
        return [f for f in found if f.case_id == case_id]

    told = await eventually(lambda: _at_least(feedback, 2))
    assert {f.channel for f in told} == {"citizen_app", "hotline_12345"}
    adapter = token(events_issuer, scopes=("cases:report",))
    for f, score in zip(sorted(told, key=lambda f: f.channel), (5, 4), strict=True):
        rated = await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter,
                                    json={"token": f.token, "score": score})
        assert rated.status_code == 200, rated.text

    # 7. The review's figures for the branch, exactly as the case's events say.
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    at = {e["kind"]: _at(e["at"]) for e in history}
    dispatched, started, handled = at["dispatched"], at["started"], at["handled"]
    accept_due = _at(a["accept_due"])
    assert accept_due == dispatched + timedelta(minutes=30 * SCALE)
    assert started > accept_due and handled < _at(a["dispose_due"])
    period = {"start": dispatched.isoformat(),
              "end": (datetime.now(dispatched.tzinfo) + timedelta(minutes=1)).isoformat()}
    expected = {
        "department": "CGJ", "unit": "CGJ-329901", "received": 1, "accepted": 1,
        "accepted_on_time": 0, "disposed": 1, "disposed_on_time": 1, "returns": 0,
        "escalations": 1, "closed": 1, "reopened": 0, "reopen_rate": 0.0,
        "accept_on_time_rate": 0.0, "dispose_on_time_rate": 1.0,
        "accept_time_avg_s": (started - dispatched).total_seconds(),
        "accept_time_p90_s": (started - dispatched).total_seconds(),
        "dispose_time_avg_s": (handled - dispatched).total_seconds(),
        "dispose_time_p90_s": (handled - dispatched).total_seconds(),
        "satisfaction_avg": 4.5, "ratings": 2}

    async def figures() -> dict[str, Any] | None:
        response = await review.get("/review/units/CGJ-329901", params=period)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["ratings"] == 2 else None

    got = await eventually(figures)
    assert {k: got[k] for k in expected} == _approx(expected, got)

    # 8. From the figure to the case and its whole story.
    late = (await review.get("/review/drill", params={
        "figure": "accepted_late", "unit": "CGJ-329901", **period})).json()
    assert [r["case_id"] for r in late["items"]] == [case_id]
    story = (await review.get(f"/review/cases/{case_id}/timeline")).json()
    kinds = [(t["source"], t["kind"]) for t in story["timeline"]]
    assert ("case", "dispatched") in kinds and ("dispatch", "escalated") in kinds
    assert kinds.index(("case", "dispatched")) < kinds.index(("dispatch", "escalated")) < \
        kinds.index(("case", "started"))

    # 9. Rebuilt from the streams alone: the same figures.
    assert (await review.post("/review/rebuild")).status_code == 202

    async def rebuilt() -> bool:
        status = (await review.get("/review/rebuild")).json()
        assert status["state"] != "failed", status
        return bool(status["state"] == "done")

    await eventually(rebuilt, timeout=60)
    again = (await review.get("/review/units/CGJ-329901", params=period)).json()
    assert {k: again[k] for k in expected} == _approx(expected, again)


def _approx(expected: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """`expected`, with float times equal to `got`'s where they agree to the microsecond."""
    return {k: got[k] if isinstance(v, float) and got[k] is not None and abs(got[k] - v) < 1e-5
            else v for k, v in expected.items()}


async def _at_least(check: Any, n: int) -> Any:
    found = await check()
    return found if len(found) >= n else None


async def _async(value: Any) -> Any:
    return value
