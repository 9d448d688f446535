"""A dispatch that stops mid-deadline and starts again still escalates on time: the timers are
rows in Postgres, and the durable consumer resumes where the last process left off.

Its own module: no other dispatch instance may run meanwhile (it would fire the timer)."""

import asyncio
import dataclasses
from datetime import datetime
from typing import Any

import asyncpg
from dispatch.conftest import (
    OPTIONS,
    Watcher,
    accepted_case,
    assignment,
    eventually,
    running_dispatch,
    spot,
)
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer

# A slower clock than the other modules': 30 minutes to accept -> 6 s.
SLOW = dataclasses.replace(OPTIONS, time_scale=0.00333)


async def test_a_restarted_dispatch_still_escalates_on_time(
        events: AsyncTestClient[Any], make_settings: Any, events_issuer: LocalIssuer,
        watcher: Watcher, database_url: str) -> None:
    async with running_dispatch(make_settings, events_issuer, events, SLOW) as first:
        case_id = await accepted_case(events, "小区门口垃圾堆了好几天没人清理", spot(), "0101")
        a = await assignment(first, case_id)
    # Other modules' cases keep deadlines running at their faster clock: silence them, so
    # that this timer is measured, not the backlog.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE dispatch.timers SET cancelled_at = now() WHERE case_id <> $1"
                           " AND fired_at IS NULL AND cancelled_at IS NULL", case_id)
    finally:
        await conn.close()
    # Down for a while, mid-deadline (no process at all); a new one comes back before it is due.
    await asyncio.sleep(1.5)
    assert not [e for e in watcher.dispatch_events(case_id) if e.kind == "escalated"]
    async with running_dispatch(make_settings, events_issuer, events, SLOW):
        async def escalated() -> list[Any]:
            return [e for e in watcher.dispatch_events(case_id) if e.kind == "escalated"]

        (escalation,) = await eventually(escalated, timeout=20)
    late = (escalation.at - datetime.fromisoformat(a["accept_due"])).total_seconds()
    assert 0 <= late < 1.0, late  # the timer loop ticks every 50 ms
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    assert [e["kind"] for e in history].count("escalated") == 1
