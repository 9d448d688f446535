"""Closure: the reporters are told through their channel (a message on NATS with a token), the
rating is recorded, and an unsatisfied reporter reopens the case within the window only."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from dispatch.conftest import (
    UNIT_STAFF,
    Watcher,
    accepted_case,
    assignment,
    eventually,
    spot,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_contracts.dispatch import Feedback
from cityos_kit.auth import LocalIssuer

CHANNEL = ("cases:report",)  # a channel adapter's client


async def closed_case(events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
                      issuer: LocalIssuer, text: str, category: str) -> tuple[int, str]:
    case_id = await accepted_case(events, text, spot(), category)
    a = await assignment(dispatch, case_id)
    unit = token(issuer, unit=a["lead"], scopes=UNIT_STAFF)
    for action in ("accept", "handled"):
        response = await dispatch.post(f"/assignments/{case_id}/{action}", headers=unit, json={})
        assert response.status_code == 200, response.text
    for action in ("verify", "close"):
        response = await events.post(f"/cases/{case_id}/{action}", json={"reason": "已核实"})
        assert response.status_code == 200, response.text
    return case_id, a["lead"]


def feedback_of(watcher: Watcher, case_id: int) -> list[Feedback]:
    return [f for f in (msgspec.json.decode(d, type=Feedback) for d in watcher.on(".citizen_app")
                        if b"cityos.feedback.v1" in d) if f.case_id == case_id]


async def test_reporters_get_feedback_rate_and_reopen(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher,
        events_issuer: LocalIssuer) -> None:
    case_id, unit = await closed_case(events, dispatch, events_issuer,
                                      "这条路的路灯一到晚上就不亮", "0302")
    (feedback,) = await eventually(lambda: _async(feedback_of(watcher, case_id)))
    assert feedback.channel == "citizen_app" and str(case_id) in feedback.text
    assert feedback.reopen_until > datetime.now(UTC)
    adapter = token(events_issuer, scopes=CHANNEL, sub="citizen-app-adapter")
    assert (await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter,
                                json={"token": "forged", "score": 1})).status_code == 404
    rated = await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter, json={
        "token": feedback.token, "score": 2, "comment": "灯还是不亮", "reopen": True})
    assert rated.status_code == 200, rated.text
    assert rated.json() == {"schema": "cityos.rating_receipt.v1", "case_id": case_id,
                            "score": 2, "reopened": True}
    case = (await events.get(f"/cases/{case_id}")).json()
    assert case["case"]["status"] == "reopened"
    assert "not satisfied (2/5)" in case["history"][-1]["reason"]
    again = await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter,
                                json={"token": feedback.token, "score": 5})
    assert again.status_code == 409
    rated_events = await eventually(lambda: _async(
        [e for e in watcher.dispatch_events(case_id) if e.kind == "rated"]))
    assert [(e.score, e.unit) for e in rated_events] == [(2, unit)]

    # The command center lists the case's feedback: the message as sent, the rating, no token.
    (record,) = (await dispatch.get("/feedback", params={"case_id": case_id})).json()
    assert {k: record[k] for k in ("schema", "case_id", "report_id", "channel", "text", "unit",
                                   "score", "comment", "reopened")} == {
        "schema": "cityos.feedback_record.v1", "case_id": case_id,
        "report_id": feedback.report_id, "channel": "citizen_app", "text": feedback.text,
        "unit": unit, "score": 2, "comment": "灯还是不亮", "reopened": True}
    assert record["rated_at"] is not None and "token" not in record
    # Per unit: the unit's own list has it; the rated filter works; another unit may not look.
    of_unit = (await dispatch.get("/feedback", params={"unit": unit, "rated": "true"})).json()
    assert case_id in {r["case_id"] for r in of_unit}
    assert all(r["unit"] == unit and r["score"] is not None for r in of_unit)
    unrated = (await dispatch.get("/feedback", params={"unit": unit, "rated": "false"})).json()
    assert case_id not in {r["case_id"] for r in unrated}
    own = token(events_issuer, unit=unit, scopes=("cases:read",))
    assert case_id in {r["case_id"] for r in (await dispatch.get("/feedback", headers=own)).json()}
    other = "CGJ-329902" if unit != "CGJ-329902" else "CGJ-329903"
    stranger = token(events_issuer, unit=other, scopes=("cases:read",))
    assert (await dispatch.get("/feedback", headers=stranger,
                               params={"unit": unit})).status_code == 403
    assert case_id not in {r["case_id"] for r in (await dispatch.get(
        "/feedback", headers=stranger, params={"case_id": case_id})).json()}


async def test_no_reopen_after_the_window(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher,
        events_issuer: LocalIssuer, database_url: str) -> None:
    case_id, _ = await closed_case(events, dispatch, events_issuer,
                                   "饭店把桌子摆到人行道上", "0202")
    (feedback,) = await eventually(lambda: _async(feedback_of(watcher, case_id)))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE dispatch.feedback SET reopen_until = $2 WHERE token = $1",
                           feedback.token, datetime.now(UTC) - timedelta(minutes=1))
    finally:
        await conn.close()
    adapter = token(events_issuer, scopes=CHANNEL)
    late = await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter, json={
        "token": feedback.token, "score": 1, "reopen": True})
    assert late.status_code == 409 and "window" in late.json()["detail"]
    assert (await events.get(f"/cases/{case_id}")).json()["case"]["status"] == "closed"
    # Nothing was kept: the same rating without reopening is taken.
    fine = await dispatch.post(f"/feedback/{case_id}/rating", headers=adapter,
                               json={"token": feedback.token, "score": 1})
    assert fine.status_code == 200 and fine.json()["reopened"] is False
    (record,) = (await dispatch.get("/feedback", params={"case_id": case_id})).json()
    assert (record["score"], record["reopened"]) == (1, False)


async def _async(value: Any) -> Any:
    return value
