"""Dispatch's consumer takes cases side by side (the kit's `parallel`): a slow case holds up
its own later events only, each case's events are handled in stream order, each acked once."""

import asyncio
from datetime import UTC, datetime
from typing import Any

from dispatch.conftest import eventually
from nats.aio.msg import Msg

from cityos_contracts.cases import CaseEvent
from cityos_contracts.subjects import CASE_EVENTS, STREAMS
from cityos_kit.bus import Bus

_STREAM = next(s for s in STREAMS if CASE_EVENTS in s.subjects)
SLOW, QUICK = 990_001, 990_002  # case ids no other test uses


def _event(case_id: int, seq: int) -> CaseEvent:
    return CaseEvent(event_id=f"t-{case_id}-{seq}", case_id=case_id, seq=seq, kind="noted",
                     to_status="dispatched", actor="test", actor_unit="CMD",
                     at=datetime.now(UTC))


async def test_cases_side_by_side_each_in_order(make_settings: Any) -> None:
    bus = Bus(make_settings("dispatch-consumer-test"))
    await bus.connect()
    await bus.ensure_streams([_STREAM])
    done: list[tuple[int, int]] = []
    running = 0
    most = 0

    async def handle(event: CaseEvent, msg: Msg) -> None:
        nonlocal running, most
        if event.case_id not in (SLOW, QUICK):
            return  # other tests' cases in this namespace
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.5 if (event.case_id, event.seq) == (SLOW, 1) else 0.01)
        running -= 1
        done.append((event.case_id, event.seq))

    try:
        for seq in (1, 2, 3):
            for case_id in (SLOW, QUICK):
                await bus.publish(CASE_EVENTS.format(case_id=str(case_id)),
                                  _event(case_id, seq), msg_id=f"t:{case_id}:{seq}")
        bus.consume(_STREAM, "dispatch-consumer-test", CaseEvent, handle,
                    filter_subject=CASE_EVENTS.wildcard(), batch=1, parallel=4)
        await eventually(lambda: _now(len(done) == 6), timeout=20)
        # The quick case was through while the slow one's first event was still running.
        assert done[:3] == [(QUICK, 1), (QUICK, 2), (QUICK, 3)]
        assert [s for c, s in done if c == SLOW] == [1, 2, 3]
        assert most == 2  # never two of one case at once
        await asyncio.sleep(0.3)
        assert len(done) == 6  # acked once each: nothing comes back
    finally:
        await bus.close()


async def _now(value: bool) -> bool:
    return value
