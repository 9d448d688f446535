"""Deadlines and their timers: a reminder before, an escalation after.

The deadlines come from the category (minutes to accept, hours to dispose), capped when the
case's priority was raised above the category's (an emergency), and counted from the dispatch.
Timers are rows in Postgres: a dispatch that restarts, or another replica, fires them when
they fall due; `SKIP LOCKED` lets replicas share the work without firing one twice.

Reminders go in batches: one statement locks up to STEP due ones with what their
rounds stand at, their events are published together, one statement marks them fired. They
lock no case row and wait for no lock (SKIP LOCKED), so the consumer at most waits for such a
batch to commit. A deadline escalates through the hub, one by one, and there the lock order is
the case's row, then its timers (as the consumer's), so the loop and the consumer never
deadlock.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from cityos_contracts.dispatch import Priority
from cityos_dispatch.config import DispatchSettings
from cityos_dispatch.rules import Category
from cityos_dispatch.store import DispatchStore
from cityos_kit.telemetry import logger

log = logger("cityos.dispatch.timers")


def deadlines(category: Category | None, priority: Priority, start: datetime,
              s: DispatchSettings) -> tuple[datetime, datetime]:
    """(accept_due, dispose_due) for a dispatch at `start`."""
    accept_min = category.accept_within_minutes if category else 60.0
    dispose_h = category.dispose_within_hours if category else 24.0
    if priority == "urgent":
        accept_min, dispose_h = min(accept_min, s.urgent_accept_min), \
            min(dispose_h, s.urgent_dispose_h)
    elif priority == "high":
        accept_min, dispose_h = min(accept_min, s.high_accept_min), \
            min(dispose_h, s.high_dispose_h)
    return (start + timedelta(minutes=accept_min * s.time_scale),
            start + timedelta(hours=dispose_h * s.time_scale))


def timer_rows(case_id: int, round_seq: int, unit: str, start: datetime,
               due: dict[str, datetime], remind_at: float) -> list[tuple[Any, ...]]:
    """A reminder and a deadline per deadline kind (`accept`, `dispose`)."""
    rows: list[tuple[Any, ...]] = []
    for deadline, at in due.items():
        remind = start + (at - start) * remind_at
        if remind < at:
            rows.append((case_id, round_seq, deadline, True, unit, remind))
        rows.append((case_id, round_seq, deadline, False, unit, at))
    return rows


@dataclass(frozen=True)
class DueTimer:
    timer_id: int
    case_id: int
    round_seq: int
    deadline: str
    unit: str
    due_at: datetime


Fire = Callable[[asyncpg.Connection, DueTimer], Awaitable[None]]
Remind = Callable[[list[Any]], Awaitable[None]]


class TimerLoop:
    """Fires due timers every `tick_s`: `remind(rows)` with a batch of due reminders (rows of
    DispatchStore.due_reminders) in their transaction, `fire(conn, timer)` with a deadline in
    the timer's transaction."""

    def __init__(self, pool: asyncpg.Pool, store: DispatchStore, remind: Remind, fire: Fire,
                 tick_s: float) -> None:
        self.pool, self.store, self.tick_s = pool, store, tick_s
        self.remind, self.fire = remind, fire
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatch-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # A backlog (after a restart, or many deadlines at one moment) is fired in steps of
    # STEP timers of each kind, with a pause between: the consumer shares this loop, and an
    # acceptance must not wait behind thousands of reminders going out at once.
    STEP = 50
    BACKLOG_PAUSE_S = 0.05

    async def _run(self) -> None:
        while True:
            try:
                while True:  # keep going until none is due
                    if await self.fire_due(self.STEP) == 0:
                        break
                    await asyncio.sleep(self.BACKLOG_PAUSE_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop outlives a database or hub hiccup
                if self.pool.is_closing():
                    return  # shutting down: the service's lifespan closed the pool
                log.warning("timer_loop_failed", error=repr(exc))
            await asyncio.sleep(self.tick_s)

    async def fire_due(self, limit: int = 200) -> int:
        """Fire up to `limit` due reminders and `limit` due deadlines; returns how many were
        handled."""
        async with self.pool.acquire() as conn, conn.transaction():
            reminders = await self.store.due_reminders(conn, limit)
            if reminders:
                await self.remind(reminders)
                await self.store.fired(conn, [r["timer_id"] for r in reminders])
        candidates = await self.pool.fetch(
            "SELECT * FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL"
            " AND NOT remind AND due_at <= now() ORDER BY due_at LIMIT $1", limit)
        handled = len(reminders)
        for row in candidates:
            try:
                handled += await self._fire_one(row)
            except Exception as exc:  # this one is retried next tick; the others go on
                if self.pool.is_closing():
                    raise
                log.warning("timer_failed", timer_id=row["timer_id"], case_id=row["case_id"],
                            error=repr(exc))
        return handled

    async def _fire_one(self, row: Any) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.lock_case(conn, row["case_id"])
            still = await conn.fetchrow(
                "SELECT * FROM timers WHERE timer_id = $1 AND fired_at IS NULL"
                " AND cancelled_at IS NULL FOR UPDATE SKIP LOCKED", row["timer_id"])
            if still is None:  # cancelled meanwhile, or another replica has it
                return 0
            await self.fire(conn, DueTimer(
                still["timer_id"], still["case_id"], still["round_seq"], still["deadline"],
                still["unit"], still["due_at"]))
            await self.store.fired(conn, [still["timer_id"]])
            return 1
