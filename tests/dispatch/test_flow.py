"""From acceptance to closure through dispatch: routed by the rules (recorded with the rule's
version), units act through dispatch and the hub records them, a unit acting on a case not its
own or out of order is refused with nothing changed."""

from typing import Any

from dispatch.conftest import (
    CENTER,
    UNIT_STAFF,
    Watcher,
    accepted_case,
    assignment,
    eventually,
    spot,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer


async def test_an_accepted_case_is_routed_by_its_rule_to_the_district_branch(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher) -> None:
    lon, lat = spot()
    case_id = await accepted_case(events, "学校门口有流动摊贩占道卖烧烤", (lon, lat), "0201")
    a = await assignment(dispatch, case_id)
    district = (await events.get(f"/cases/{case_id}")).json()["case"]["location"]["district"]
    assert a["lead"] == f"CGJ-{district}" and a["assisting"] == []
    assert a["rule_id"] and a["rule_version"] == 1 and a["priority"] == "normal"
    rule = (await dispatch.get(f"/rules/{a['rule_id']}")).json()
    assert rule["rule"]["category"] == "0201" and rule["rule"]["level"] == "district"
    case = (await events.get(f"/cases/{case_id}")).json()
    dispatched = case["history"][-1]
    assert (dispatched["kind"], dispatched["unit"]) == ("dispatched", a["lead"])
    assert f"rule {a['rule_id']} v1" in dispatched["reason"]
    routed = await eventually(lambda: _async(watcher.dispatch_events(case_id)))
    assert routed[0].kind == "routed" and routed[0].round_seq == dispatched["seq"]
    assert routed[0].rule_id == a["rule_id"] and routed[0].accept_due is not None


async def test_joint_handling_names_lead_and_assisting_units(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "隔壁一套房子住了二十多个人，疑似群租", spot(), "1201")
    a = await assignment(dispatch, case_id)
    district = a["lead"].split("-")[1]
    assert (a["lead"], a["assisting"]) == (f"GAJ-{district}", [f"ZJJ-{district}"])
    helper = token(events_issuer, unit=f"ZJJ-{district}", scopes=UNIT_STAFF, sub="zjj-1")
    # The assisting unit sees the case and reports progress, but does not accept it.
    assert (await dispatch.get(f"/assignments/{case_id}", headers=helper)).status_code == 200
    progress = await dispatch.post(f"/assignments/{case_id}/progress", headers=helper,
                                   json={"reason": "已核查房屋结构安全"})
    assert progress.status_code == 200, progress.text
    refused = await dispatch.post(f"/assignments/{case_id}/accept", headers=helper, json={})
    assert refused.status_code == 403 and "GAJ-" in refused.json()["detail"]
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    assert history[-1]["kind"] == "noted" and "ZJJ-" in history[-1]["reason"]


async def test_units_act_through_dispatch_and_the_hub_records_who(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "路边垃圾桶满了溢出来臭气熏天", spot(), "0101")
    a = await assignment(dispatch, case_id)
    unit = token(events_issuer, unit=a["lead"], scopes=UNIT_STAFF, sub="hwc-wang")
    stranger = token(events_issuer, unit="CGJ-329901", scopes=UNIT_STAFF, sub="cgj-li")
    before = (await events.get(f"/cases/{case_id}")).json()["case"]["version"]

    # Not its case: refused, nothing changed anywhere.
    refused = await dispatch.post(f"/assignments/{case_id}/accept", headers=stranger, json={})
    assert refused.status_code == 403 and a["lead"] in refused.json()["detail"]
    # Out of order: handled is fine from dispatched in the hub, but a return needs a reason.
    no_reason = await dispatch.post(f"/assignments/{case_id}/return", headers=unit, json={})
    assert no_reason.status_code == 409 and "reason" in no_reason.json()["detail"]
    assert (await events.get(f"/cases/{case_id}")).json()["case"]["version"] == before

    accepted = await dispatch.post(f"/assignments/{case_id}/accept", headers=unit, json={})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted" and accepted.json()["accepted_at"]
    again = await dispatch.post(f"/assignments/{case_id}/accept", headers=unit, json={})
    assert again.status_code == 409 and "cannot start" in again.json()["detail"]

    handled = await dispatch.post(f"/assignments/{case_id}/handled", headers=unit, json={
        "reason": "已清运", "evidence": ["s3://evidence/1.jpg", "s3://evidence/2.jpg"]})
    assert handled.status_code == 200, handled.text
    assert handled.json()["state"] == "handled"
    assert handled.json()["evidence"] == ["s3://evidence/1.jpg", "s3://evidence/2.jpg"]
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    started, finished = history[-2], history[-1]
    assert (started["kind"], started["actor"], started["actor_unit"]) == \
        ("started", "hwc-wang", a["lead"])
    assert finished["kind"] == "handled" and "s3://evidence/1.jpg" in finished["reason"]
    # Closing is the center's, after verification: closing an unverified case is refused.
    close = await events.post(f"/cases/{case_id}/close", json={"reason": "x"})
    assert close.status_code == 409


async def test_a_returned_case_is_rerouted_by_the_center(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "人行道上摆满了水果摊走不过去", spot(), "0201")
    a = await assignment(dispatch, case_id)
    unit = token(events_issuer, unit=a["lead"], scopes=UNIT_STAFF, sub="cgj-zhao")
    returned = await dispatch.post(f"/assignments/{case_id}/return", headers=unit,
                                   json={"reason": "不属于本辖区"})
    assert returned.status_code == 200 and returned.json()["state"] == "returned"
    # The center sends it elsewhere by hand: a second round, no rule, new deadlines.
    other = "CGJ-329904" if a["lead"] != "CGJ-329904" else "CGJ-329901"
    response = await events.post(f"/cases/{case_id}/dispatch", json={"unit": other})
    assert response.status_code == 200, response.text
    second = await eventually(lambda: _round(dispatch, case_id, a["round_seq"]))
    assert second["lead"] == other and second["rule_id"] is None
    assert second["accept_due"] > a["accept_due"]


async def test_an_extension_moves_the_disposal_deadline(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "旁边工地灰尘很大没有洒水", spot(), "0503")
    a = await assignment(dispatch, case_id)
    unit = token(events_issuer, unit=a["lead"], scopes=UNIT_STAFF, sub="zjj-he")
    asked = await dispatch.post(f"/assignments/{case_id}/extension", headers=unit,
                                json={"hours": 12, "reason": "需协调施工方"})
    assert asked.status_code == 200 and asked.json()["extension_pending_h"] == 12
    refused = await dispatch.post(f"/assignments/{case_id}/extension/decision", headers=unit,
                                  json={"approve": True})
    assert refused.status_code == 403
    granted = await dispatch.post(f"/assignments/{case_id}/extension/decision",
                                  json={"approve": True, "reason": "同意"})
    assert granted.status_code == 200, granted.text
    from datetime import datetime

    moved = datetime.fromisoformat(granted.json()["dispose_due"]) - \
        datetime.fromisoformat(a["dispose_due"])
    assert abs(moved.total_seconds() - 12 * 3600 * 0.002) < 0.01
    assert granted.json()["extension_pending_h"] is None
    none_left = await dispatch.post(f"/assignments/{case_id}/extension/decision",
                                    json={"approve": True})
    assert none_left.status_code == 409


async def test_unknown_cases_units_and_rules_are_clear_errors(
        dispatch: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:
    assert (await dispatch.get("/assignments/987654321")).status_code == 404
    assert (await dispatch.post("/assignments/987654321/accept", json={})).status_code == 404
    bad = await dispatch.post("/rules", json={"lead": "NOPE-1", "category": "0101"})
    assert bad.status_code == 422 and "NOPE-1" in bad.json()["detail"]
    bad = await dispatch.post("/rules", json={"lead": "CGJ", "level": "district",
                                              "category": "9999"})
    assert bad.status_code == 422
    unit = token(events_issuer, unit="HWC-329901", scopes=UNIT_STAFF)
    assert (await dispatch.get("/assignments", params={"unit": "CGJ"}, headers=unit)
            ).status_code == 403
    assert (await dispatch.get("/assignments", params={"state": "nope"})).status_code == 400
    center = token(events_issuer, scopes=CENTER)
    assert (await dispatch.get("/assignments", headers=center)).status_code == 200


async def _round(dispatch: AsyncTestClient[Any], case_id: int, old: int) -> dict[str, Any] | None:
    body: dict[str, Any] = (await dispatch.get(f"/assignments/{case_id}")).json()
    return body if body.get("round_seq", old) != old else None


async def _async(value: Any) -> Any:
    return value


async def test_an_event_ahead_of_a_gap_reads_the_history_from_the_hub(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any]) -> None:
    """Replicas share the consumer: one may get a case's event before another has applied
    the one before it. Dispatch then folds the hub's history instead of skipping."""
    import asyncio

    import msgspec

    from cityos_contracts.cases import CaseEvent

    case_id = await accepted_case(events, "电线杆上贴满了办证小广告", spot(), "0103")
    a = await assignment(dispatch, case_id)
    for n in range(2):
        assert (await events.post(f"/cases/{case_id}/note", json={"reason": f"巡查{n}"})
                ).status_code == 200
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    last = msgspec.convert(history[-1], CaseEvent)
    ahead = msgspec.structs.replace(last, seq=last.seq + 5, event_id="ahead")
    dispatcher = dispatch.app.state.dispatcher
    await asyncio.to_thread(dispatch.blocking_portal.call, dispatcher.on_case_event, ahead)
    case = await asyncio.to_thread(dispatch.blocking_portal.call, dispatcher.store.case,
                                   case_id)
    assert case["version"] == last.seq and case["status"] == "dispatched"
    assert (await dispatch.get(f"/assignments/{case_id}")).json()["round_seq"] == a["round_seq"]
