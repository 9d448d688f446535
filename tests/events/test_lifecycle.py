"""One state machine: every transition an event with who, when and why; units act only on
their own cases; no lost update under concurrency; the history rebuilt from the stream."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from events.conftest import OPERATOR, fresh_point, post_report, report, token
from litestar.testing import AsyncTestClient

from cityos_contracts.cases import CaseEvent, Classification, Location
from cityos_events.history import replay
from cityos_events.intake import search_terms
from cityos_events.lifecycle import fold
from cityos_events.location import neighbour_cells
from cityos_events.store import CaseStore, NewReport
from cityos_kit import db
from cityos_kit.auth import LocalIssuer
from cityos_kit.bus import Bus


async def test_a_case_from_report_to_closure(events: AsyncTestClient[Any],
                                             events_issuer: LocalIssuer) -> None:
    receipt = await post_report(events, report("人行道上的窨井盖不见了，晚上看不清很危险",
                                               (120.95, 32.10)))
    case_id = receipt["case_id"]
    await events.post(f"/cases/{case_id}/accept", json={"reason": "属实"})
    dispatched = (await events.post(f"/cases/{case_id}/dispatch", json={})).json()["case"]
    # Manhole covers are the water bureau's, handled at city level.
    assert dispatched["handling_unit"] == "SWJ" and dispatched["status"] == "dispatched"
    unit = token(events_issuer, unit="SWJ", scopes=("cases:read", "cases:act"), sub="swj-1")
    other = token(events_issuer, unit="CGJ", scopes=("cases:read", "cases:act"), sub="cgj-1")
    assert (await events.post(f"/cases/{case_id}/start", json={}, headers=other)).status_code \
        == 403
    for action in ("start", "finish"):
        response = await events.post(f"/cases/{case_id}/{action}", json={}, headers=unit)
        assert response.status_code == 200, response.text
    # The unit that did the work does not verify it; the street's grid staff do.
    assert (await events.post(f"/cases/{case_id}/verify", json={}, headers=unit)).status_code \
        == 403
    grid = token(events_issuer, unit="JD-329902001", scopes=("cases:read", "cases:act"),
                 sub="grid-9", roles=("field_staff",))
    assert (await events.post(f"/cases/{case_id}/verify", json={}, headers=grid)).status_code \
        == 200
    closed = (await events.post(f"/cases/{case_id}/close", json={"reason": "已回访"})).json()
    assert closed["case"]["status"] == "closed" and closed["case"]["closed_at"]
    history = closed["history"]
    assert [e["kind"] for e in history] == ["received", "classified", "accepted", "dispatched",
                                            "started", "handled", "verified", "closed"]
    assert [e["seq"] for e in history] == list(range(1, 9))
    assert [e["actor"] for e in history][2:] == ["tester", "tester", "swj-1", "swj-1",
                                                 "grid-9", "tester"]
    assert history[2]["reason"] == "属实" and history[3]["unit"] == "SWJ"
    assert all(e["at"] for e in history)

    reopened = await events.post(f"/cases/{case_id}/reopen", json={"reason": "市民反映仍未修好"})
    assert reopened.json()["case"]["status"] == "reopened"
    assert reopened.json()["case"]["handling_unit"] == "CMD"


async def test_wrong_transitions_and_missing_reasons_are_refused(
        events: AsyncTestClient[Any]) -> None:
    receipt = await post_report(events, report("有人在小区里到处张贴贷款小广告"))
    case_id = receipt["case_id"]
    finish = await events.post(f"/cases/{case_id}/finish", json={})
    assert finish.status_code == 409 and "cannot finish a case that is classified" in finish.text
    assert (await events.post(f"/cases/{case_id}/reject", json={})).status_code == 422
    assert (await events.post(f"/cases/{case_id}/classify", json={"category": "7777"})
            ).status_code == 422
    assert (await events.post("/cases/987654321/accept", json={})).status_code == 404
    unclear = await post_report(events, report("请帮我看看这是怎么回事"))
    accept = await events.post(f"/cases/{unclear['case_id']}/accept", json={})
    assert accept.status_code == 409, accept.text
    classified = await events.post(f"/cases/{unclear['case_id']}/classify",
                                   json={"category": "1202", "reason": "邻里纠纷"})
    case = classified.json()["case"]
    assert (case["status"], case["category"], case["classified_by"]) == \
        ("classified", "1202", "operator")
    rejected = await events.post(f"/cases/{case_id}/reject", json={"reason": "重复广告已清理"})
    assert rejected.json()["case"]["status"] == "rejected"


async def test_two_concurrent_updates_of_one_case_lose_nothing(
        events: AsyncTestClient[Any]) -> None:
    receipt = await post_report(events, report("路面上有好几个大坑，开车经过车底都刮到了"))
    case_id = receipt["case_id"]
    version = (await events.get(f"/cases/{case_id}")).json()["case"]["version"]
    # Two operators act on what they both read: exactly one wins, the other is told.
    answers = await asyncio.gather(
        events.post(f"/cases/{case_id}/accept", json={"expected_version": version}),
        events.post(f"/cases/{case_id}/reject", json={"expected_version": version,
                                                      "reason": "不属实"}))
    assert sorted(a.status_code for a in answers) == [200, 409]
    # Unconditional updates serialise on the row lock: all of them land, in order.
    answers = await asyncio.gather(*(
        events.post(f"/cases/{case_id}/classify", json={"category": code, "reason": "复核"})
        for code in ("0401", "0102", "0401", "0102", "0401")))
    detail = (await events.get(f"/cases/{case_id}")).json()
    statuses = {a.status_code for a in answers}
    if detail["case"]["status"] == "rejected":  # reject won above: classify is refused
        assert statuses == {409}
    else:
        assert statuses == {200}
        assert detail["case"]["version"] == version + 6
    assert [e["seq"] for e in detail["history"]] == list(range(1, detail["case"]["version"] + 1))


async def test_reports_of_one_incident_arriving_together_make_one_case(
        events: AsyncTestClient[Any], make_settings: Any) -> None:
    lon, lat = fresh_point()
    texts = [f"{who}反映：任港新村北门垃圾桶满得溢出来，臭气熏天" for who in
             ("市民", "居民", "网格员", "物业", "路人", "业主", "租户", "店主")]
    answers = await asyncio.gather(*(
        events.post("/reports", json=report(t, (lon + i * 1e-5, lat), minutes_ago=30 - i))
        for i, t in enumerate(texts)))
    assert all(a.status_code == 201 for a in answers), [a.text for a in answers]
    (case_id,) = {a.json()["case_id"] for a in answers}
    detail = (await events.get(f"/cases/{case_id}")).json()
    assert detail["case"]["report_count"] == len(texts) == len(detail["reports"])
    assert [e["seq"] for e in detail["history"]] == list(range(1, len(detail["history"]) + 1))
    # Published in batches across requests, the case's events are on the stream in seq order.
    bus = Bus(make_settings("order-reader"))
    await bus.connect()
    try:
        for _ in range(50):
            streamed = await replay(bus, case_id)
            if len(streamed) == len(detail["history"]):
                break
            await asyncio.sleep(0.1)
    finally:
        await bus.close()
    assert [e.seq for e in streamed] == [e["seq"] for e in detail["history"]]


async def test_history_is_rebuilt_from_the_stream(events: AsyncTestClient[Any],
                                                  make_settings: Any) -> None:
    receipt = await post_report(events, report("这条路的路灯一到晚上就不亮"))
    case_id = receipt["case_id"]
    await post_report(events, report("这条路的路灯晚上都不亮，黑漆漆的",
                                     (receipt["location"]["lon"], receipt["location"]["lat"])))
    await events.post(f"/cases/{case_id}/accept", json={})
    await events.post(f"/cases/{case_id}/dispatch", json={"unit": "CGJ-329903"})
    detail = (await events.get(f"/cases/{case_id}")).json()
    stored = [CaseEvent(**{k: v for k, v in e.items() if k != "schema"})
              for e in detail["history"]]
    bus = Bus(make_settings("history-reader"))
    await bus.connect()
    try:
        for _ in range(50):
            streamed = await replay(bus, case_id)
            if len(streamed) == len(stored):
                break
            await asyncio.sleep(0.1)
        everything = await replay(bus)
    finally:
        await bus.close()
    assert {e.event_id for e in streamed} <= {e.event_id for e in everything}
    assert [e.event_id for e in streamed] == [e["event_id"] for e in detail["history"]]
    rebuilt = fold(case_id, streamed)
    case = detail["case"]
    assert (rebuilt.status, rebuilt.category, rebuilt.handling_unit, rebuilt.version) == \
        (case["status"], case["category"], case["handling_unit"], case["version"])
    assert rebuilt.report_ids == {r["report_id"] for r in detail["reports"]}
    assert fold(case_id, stored) == rebuilt


async def test_a_unit_sees_only_its_cases(events: AsyncTestClient[Any],
                                          events_issuer: LocalIssuer) -> None:
    receipt = await post_report(events, report("饭店门口的车辆双排停车，整条路堵死了",
                                               category="0204"))
    case_id = receipt["case_id"]
    stranger = token(events_issuer, unit="HWC", scopes=OPERATOR)
    assert (await events.get(f"/cases/{case_id}", headers=stranger)).status_code == 403
    await events.post(f"/cases/{case_id}/accept", json={})
    unit = (await events.post(f"/cases/{case_id}/dispatch", json={})).json()["case"][
        "handling_unit"]
    assert unit.startswith("JJZD-")
    branch = token(events_issuer, unit=unit, scopes=OPERATOR)
    department = token(events_issuer, unit="JJZD", scopes=OPERATOR)
    for headers in (branch, department):
        assert (await events.get(f"/cases/{case_id}", headers=headers)).status_code == 200
        page = (await events.get("/cases", headers=headers)).json()["items"]
        assert {c["case_id"] for c in page} == {case_id}


async def test_events_missed_by_nats_are_relayed(events: AsyncTestClient[Any],
                                                 make_settings: Any) -> None:
    """Committed but not published (NATS down, a crash): the relay publishes them later."""
    publisher = events.app.state.publisher
    publish = publisher.publish

    async def nats_down(events: Any) -> bool:
        return False

    publisher.publish = nats_down
    try:
        receipt = await post_report(events, report("公园里的树倒在步道上，挡住了路"))
    finally:
        publisher.publish = publish
    publisher.relay_grace, publisher.relay_every_s = timedelta(0), 0.2
    bus = Bus(make_settings("history-reader"))
    await bus.connect()
    try:
        for _ in range(100):
            streamed = await replay(bus, receipt["case_id"])
            if len(streamed) == 2:
                break
            await asyncio.sleep(0.1)
        assert [e.kind for e in streamed] == ["received", "classified"]
    finally:
        publisher.relay_grace, publisher.relay_every_s = timedelta(seconds=10), 5.0
        await bus.close()


async def test_a_merge_choice_made_on_candidates_that_changed_is_made_again(
        events: AsyncTestClient[Any], make_settings: Any) -> None:
    """Candidates are read without locks; if a report of the incident is stored before the
    write takes the locks, the write is refused and the choice made again under them."""
    first = await post_report(events, report("任港路公交站旁边的窨井盖碎了，一个大洞"))
    state = events.app.state
    # The app's own store lives on the client's loop: one of this test's, on the same tables.
    pool = await db.create_pool(make_settings("events"), "events")
    store = CaseStore(pool, state.store.categories)
    text = "任港路公交站旁的窨井盖破了个大洞"
    location = msgspec.convert(first["location"], Location)
    second = NewReport(
        channel="citizen_app", text=text, reported_at=datetime.now(UTC) - timedelta(minutes=2),
        location=location, classification=msgspec.convert(first["classification"],
                                                          Classification),
        confident=True, media=[], category_hint=None, source_ref=None, idempotency_key=None,
        payload_hash="test", contact=None, bigrams=search_terms(text))
    assert location.lon is not None and location.lat is not None
    cells = neighbour_cells(location.lon, location.lat, state.intake.search_radius_m)
    merger = state.intake.merger
    try:
        async with pool.acquire() as conn:
            # As if the candidates had been read before the first report was stored: none.
            refused = await store._write(conn, second, None, cells, {}, merger.window,
                                         merger.closed_window, True)
        assert refused is None
        case = (await events.get(f"/cases/{first['case_id']}")).json()["case"]
        assert case["report_count"] == 1
        found = await events.get("/cases", params={"text": "旁的窨井盖破了"})
        assert found.json()["items"] == []

        result = await store.take_in(
            second, state.intake.search_radius_m, merger.window, merger.closed_window,
            state.settings.classify_threshold, state.intake._chooser("0301"))
        assert (result.case_id, result.merged) == (first["case_id"], True)
        assert [(e.kind, e.seq) for e in result.events] == [("report_added", 3)]
        detail = (await events.get(f"/cases/{first['case_id']}")).json()
        assert detail["case"]["report_count"] == 2
        assert [e["seq"] for e in detail["history"]] == [1, 2, 3]
        assert msgspec.convert(detail["history"][-1], CaseEvent) == result.events[0]
    finally:
        await pool.close()
