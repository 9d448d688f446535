"""Dispatch and the review as their own NATS users of the generated config (a private
nats-server): each may do what it needs — publish its events, feedback, staff positions and
street reports, ask the spatio-temporal queries, read the case and dispatch streams from the
start for a rebuild — and nothing of the others'."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from identity.test_nats_permissions import PREFIX, Server, connect, server  # noqa: F401

from cityos_contracts.cases import CaseEvent
from cityos_contracts.subjects import CASE_EVENTS, DISPATCH_EVENTS, streams_of
from cityos_kit.bus import Bus
from cityos_kit.config import Settings
from cityos_review.rebuild import read


def bus_of(server: Server, user: str) -> Bus:  # noqa: F811
    return Bus(Settings(service=user, nats_url=server.url, nats_user=user,
                        nats_password=server.passwords[user], nats_prefix=PREFIX))


async def test_dispatch_publishes_what_it_owns_and_asks_the_engine(server: Server) -> None:  # noqa: F811
    errors: list[str] = []
    nc = await connect(server, "dispatch", errors)
    try:
        for subject in ("dispatch.events.1", "dispatch.emergencies.1", "feedback.hotline_12345",
                        "ingest.raw.field_staff", "reports.grid_app", "audit.dispatch"):
            await nc.publish(f"{PREFIX}.{subject}", b"{}")
        await nc.flush()
        await asyncio.sleep(0.2)
        assert errors == []
        for query in ("stquery.nearest", "stquery.box"):
            try:  # nobody answers here: "no responders", not a permissions violation
                await nc.request(f"{PREFIX}.{query}", b"{}", timeout=0.5)
            except Exception as exc:
                assert "permission" not in str(exc).lower()
        await nc.publish(f"{PREFIX}.cases.events.1", b"{}")  # the hub's, not dispatch's
        await nc.flush()
        await asyncio.sleep(0.3)
        assert any("permissions violation" in e.lower() for e in errors), errors
    finally:
        await nc.close()


async def test_the_review_reads_both_streams_from_the_start(server: Server) -> None:  # noqa: F811
    events = bus_of(server, "events")
    review = bus_of(server, "review")
    await events.connect()
    await review.connect()
    try:
        await events.ensure_streams(streams_of("events"))
        await review.ensure_streams(streams_of("review"))
        case_id = uuid.uuid4().int % 1_000_000
        event = CaseEvent(event_id=uuid.uuid4().hex, case_id=case_id, seq=1, kind="received",
                          to_status="received", actor="t", actor_unit="CMD",
                          at=datetime.now(UTC))
        await events.publish(CASE_EVENTS.format(case_id=str(case_id)), event,
                             msg_id=f"case:{case_id}:1")
        info = await review.js.stream_info(review.stream_name(next(
            s for s in streams_of("review") if CASE_EVENTS in s.subjects)))
        got: list[Any] = []
        async for batch in read(review, CASE_EVENTS, 1, info.state.last_seq):
            got += batch
        assert any(str(case_id).encode() in data for data in got)
        dispatch_stream = next(s for s in streams_of("review") if DISPATCH_EVENTS in s.subjects)
        assert (await review.js.stream_info(review.stream_name(dispatch_stream))).config
    finally:
        await events.close()
        await review.close()
