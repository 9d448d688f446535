"""One door in: a report becomes a located, classified case; bad input gets a clear 4xx;
the same report twice is one report; contacts stay masked but for the handling unit."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import pytest
from events.conftest import OPERATOR, fresh_point, post_report, report, token
from litestar.testing import AsyncTestClient
from nats.js.api import DeliverPolicy

from cityos_contracts.cases import ReporterContact, ReportIn
from cityos_contracts.subjects import REPORTS
from cityos_kit.auth import LocalIssuer
from cityos_kit.bus import Bus


async def test_a_report_becomes_a_classified_located_case(events: AsyncTestClient[Any]) -> None:
    receipt = await post_report(events, report(
        "文峰苑北门的井盖不见了，只剩一个大洞，晚上很危险", (120.8012, 32.0811),
        reporter={"name": "张三丰", "phone": "13812345678"}, media=["s3://photos/1.jpg"]))
    assert receipt["classification"]["category"] == "0301"
    assert receipt["classification"]["method"] == "rule"
    assert receipt["status"] == "classified" and not receipt["merged"]
    assert receipt["location"]["street"] == "329901002"
    assert receipt["location"]["district"] == "329901"
    assert receipt["location"]["grid"].startswith("329901002-")
    detail = (await events.get(f"/cases/{receipt['case_id']}")).json()
    case = detail["case"]
    assert (case["category_name"], case["department"], case["priority"]) == \
        ("井盖缺失破损", "SWJ", "high")
    assert case["handling_unit"] == "CMD" and not case["needs_operator"]
    assert case["accept_due"] is not None and case["dispose_due"] is not None
    assert [e["kind"] for e in detail["history"]] == ["received", "classified"]
    assert [e["seq"] for e in detail["history"]] == [1, 2]
    (only,) = detail["reports"]
    assert only["reporter"] == {"name": "张**", "phone": "138****5678", "email": None,
                                "account": None, "masked": True}
    assert only["media"] == ["s3://photos/1.jpg"]


async def test_an_address_without_coordinates_is_placed_by_the_gazetteer(
        events: AsyncTestClient[Any]) -> None:
    receipt = await post_report(events, report("小区里的路灯坏了好几盏，晚上黑漆漆的",
                                               channel="hotline_12345", address="虹桥小区3号楼"))
    location = receipt["location"]
    assert location["source"] == "gazetteer" and location["precision_m"] == 150
    assert location["street"] == "329902002" and location["street_name"] == "任港街道"


async def test_an_unclear_report_waits_for_an_operator(events: AsyncTestClient[Any]) -> None:
    for text in ("Garbage has been piling up at the north gate for a week",
                 "你好，我想问一下这个事情怎么办"):
        receipt = await post_report(events, report(text))
        case = (await events.get(f"/cases/{receipt['case_id']}")).json()["case"]
        assert case["status"] == "received" and case["needs_operator"], text
        assert case["category"] is None
    assert receipt["classification"]["method"] == "model"


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"text": "   "}, 422, "text is empty"),
    ({"text": "井盖" * 2001}, 422, "at most 4000"),
    ({"lon": 116.40, "lat": 39.90}, 422, "outside the city"),
    ({"lon": 120.8, "lat": None}, 422, "both lon and lat"),
    ({"lon": None, "lat": None}, 422, "lon/lat or an address"),
    ({"channel": "telegram"}, 400, "channel"),
    ({"category": "9999"}, 422, "unknown category"),
    ({"category": "abc"}, 400, "category"),
    ({"reported_at": "2026-11-21T08:00:00"}, 422, "time zone"),
    ({"reported_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, 422, "future"),
    ({"surprise": 1}, 400, "surprise"),
])
async def test_bad_reports_get_clear_errors(events: AsyncTestClient[Any], body: dict[str, Any],
                                            status: int, reason: str) -> None:
    response = await events.post("/reports", json=report("路灯坏了") | body)
    assert response.status_code == status, response.text
    assert reason in response.text


async def test_the_same_report_twice_is_one_report(events: AsyncTestClient[Any]) -> None:
    body = report("渣土车一路撒土，路上全是泥", idempotency_key="hotline-20261121-0042",
                  channel="hotline_12345")
    first = await post_report(events, body)
    again = await post_report(events, body, expected=200)
    assert again["duplicate"] and again["report_id"] == first["report_id"]
    assert again["case_id"] == first["case_id"]
    # The key in a header works the same; a different report under a used key is refused.
    changed = body | {"text": "渣土车一路撒土，路上全是泥，还有石块"}
    conflict = await events.post("/reports", json=changed)
    assert conflict.status_code == 409, conflict.text
    header = await events.post("/reports", json={k: v for k, v in body.items()
                                                 if k != "idempotency_key"},
                               headers={"Idempotency-Key": "hotline-20261121-0042"})
    assert header.status_code == 200 and header.json()["report_id"] == first["report_id"]
    detail = (await events.get(f"/cases/{first['case_id']}")).json()
    assert len(detail["reports"]) == 1


async def test_concurrent_posts_of_one_key_store_one_report(events: AsyncTestClient[Any]) -> None:
    body = report("小区消防通道被杂物堆满了，消防车进不来", idempotency_key="wx-race-1",
                  channel="wechat")
    answers = await asyncio.gather(*(events.post("/reports", json=body) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json()["report_id"] for a in answers}) == 1


async def test_reports_published_on_nats_are_taken_in(
        events: AsyncTestClient[Any], make_settings: Any) -> None:
    bus = Bus(make_settings("channel-system"))
    await bus.connect()
    try:
        lon, lat = fresh_point()
        message = ReportIn(channel="police_110", text="110转来：路口的红绿灯不亮了，车辆人流乱成一团",
                           reported_at=datetime.now(UTC), lon=lon, lat=lat,
                           reporter=ReporterContact(phone="13900001111"), source_ref="110-7781")
        assert await bus.publish(REPORTS.format(channel="police_110"), message, msg_id="110-7781")
        # A message that cannot be taken in goes to the dead letters, not round in circles.
        outside = msgspec.structs.replace(message, lon=116.4, lat=39.9, source_ref="110-7782")
        await bus.publish(REPORTS.format(channel="police_110"), outside, msg_id="110-7782")

        async def found() -> list[dict[str, Any]]:
            page = await events.get("/cases", params={"text": "红绿灯不亮了车辆人流"})
            return [c for c in page.json()["items"] if c["location"]["lon"] == lon]

        for _ in range(100):
            if await found():
                break
            await asyncio.sleep(0.1)
        (case,) = await found()
        assert case["category"] == "0402" and case["channels"] == ["police_110"]
        letters = await _dead_letters(bus, "police_110")
        assert any("outside the city" in letter["reason"] for letter in letters)
    finally:
        await bus.close()


async def _dead_letters(bus: Bus, dataset: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(50):
        sub = await bus.js.subscribe(bus.subject(f"deadletter.{dataset}"), ordered_consumer=True,
                                     deliver_policy=DeliverPolicy.ALL)
        try:
            while True:
                msg = await sub.next_msg(timeout=0.3)
                found.append(msgspec.json.decode(msg.data))
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
            pass
        finally:
            await sub.unsubscribe()
        if found:
            return found
        await asyncio.sleep(0.2)
    return found


async def test_only_the_handling_unit_reads_contacts_and_each_read_is_audited(
        events: AsyncTestClient[Any], events_issuer: LocalIssuer, make_settings: Any) -> None:
    receipt = await post_report(events, report(
        "楼下烧烤店的油烟直接往我家窗户里飘", reporter={"name": "李四", "phone": "13700002222",
                                                  "email": "li4@example.cn"}))
    case_id = receipt["case_id"]
    # The command center handles it until dispatch: its operator may call back.
    contacts = await events.get(f"/cases/{case_id}/contacts")
    assert contacts.status_code == 200, contacts.text
    assert contacts.json()["contacts"][0]["contact"]["phone"] == "13700002222"
    await events.post(f"/cases/{case_id}/accept", json={})
    dispatched = await events.post(f"/cases/{case_id}/dispatch", json={})
    unit = dispatched.json()["case"]["handling_unit"]
    assert unit.startswith("CGJ-")
    # Now only that unit may; the command center and an SRE see it masked.
    assert (await events.get(f"/cases/{case_id}/contacts")).status_code == 403
    sre = token(events_issuer, unit="OPS", scopes=("cases:read", "cases:act"), roles=("sre",))
    assert (await events.get(f"/cases/{case_id}/contacts", headers=sre)).status_code == 403
    masked = (await events.get(f"/cases/{case_id}", headers=sre)).json()["reports"][0]
    assert masked["reporter"]["phone"] == "137****2222"
    assert masked["reporter"]["email"] == "l**@example.cn"
    handler = token(events_issuer, unit=unit, scopes=OPERATOR, sub="cgj-staff-7")
    read = await events.get(f"/cases/{case_id}/contacts", headers=handler)
    assert read.status_code == 200 and read.json()["contacts"][0]["contact"]["name"] == "李四"
    audited = await _audit(make_settings, f"case/{case_id}/reporters")
    assert {(a["actor"], a["unit"]) for a in audited} >= {("cgj-staff-7", unit)}


async def _audit(make_settings: Any, resource: str) -> list[dict[str, Any]]:
    bus = Bus(make_settings("auditor"))
    await bus.connect()
    try:
        for _ in range(50):
            found = []
            sub = await bus.js.subscribe(bus.subject("audit.events"), ordered_consumer=True,
                                         deliver_policy=DeliverPolicy.ALL)
            try:
                while True:
                    event = msgspec.json.decode((await sub.next_msg(timeout=0.3)).data)
                    if event["resource"] == resource and event["action"] == "read personal_data":
                        found.append(event)
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either
                pass
            finally:
                await sub.unsubscribe()
            if len(found) >= 2:
                return found
            await asyncio.sleep(0.2)
        return found
    finally:
        await bus.close()
