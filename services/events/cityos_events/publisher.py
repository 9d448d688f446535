"""Case events onto NATS, after the transaction that recorded them commits (an outbox).

The events are rows first, so a crash between commit and publish loses nothing: the relay
publishes what is still unmarked. Marks are written in batches a few times a second (not one
UPDATE per request); a crash before a batch is written only means a second publish, which the
msg id `case:<id>:<seq>` makes a no-op within the stream's duplicate window, and `seq` lets
readers order and deduplicate beyond it.
"""

import asyncio
import contextlib
import contextvars
from collections.abc import Sequence
from datetime import timedelta

from cityos_contracts.cases import CaseEvent
from cityos_contracts.subjects import CASE_EVENTS
from cityos_events.store import CaseStore
from cityos_kit.bus import Bus
from cityos_kit.telemetry import logger

log = logger("cityos.events.publisher")


class EventPublisher:
    def __init__(self, bus: Bus, store: CaseStore) -> None:
        self.bus = bus
        self.store = store
        self._published: list[tuple[int, int]] = []
        self._queued: list[tuple[Sequence[CaseEvent], contextvars.Context]] = []
        self._sender: asyncio.Task[None] | None = None
        self._unsent: dict[int, int] = {}  # case id -> its events queued or in flight
        # How long the first of a batch of intake's events waits for others to join it: every
        # write to NATS is a system call, dear on a busy machine, and one carries a batch.
        self.batch_wait_s = 0.005
        # An event still unmarked this long after it was recorded is published again.
        self.relay_grace = timedelta(seconds=10)
        self.relay_every_s = 5.0

    async def publish(self, events: Sequence[CaseEvent]) -> bool:
        """Publish in seq order (one connection keeps the order); False if NATS failed and
        the relay will retry. A case's earlier events still queued in the background (intake's,
        an action right after the report) go first."""
        while self._sender is not None and not self._sender.done() and \
                any(e.case_id in self._unsent for e in events):
            await asyncio.shield(self._sender)
        return await self._publish(events)

    async def _publish(self, events: Sequence[CaseEvent]) -> bool:
        if not events:
            return True
        try:
            await asyncio.gather(*(self.bus.publish(
                CASE_EVENTS.format(case_id=str(e.case_id)), e, msg_id=f"case:{e.case_id}:{e.seq}")
                for e in events))
        except Exception as exc:
            log.warning("case_event_publish_failed", error=repr(exc), events=len(events))
            return False
        self._published += [(e.case_id, e.seq) for e in events]
        return True

    def publish_soon(self, events: Sequence[CaseEvent]) -> None:
        """Publish in the background, batched with other requests' events: they are committed
        (the relay sends them if this fails), so an answer need not wait for NATS's acks. Each
        keeps its caller's trace; batches go out in the order they were queued."""
        self._queued.append((events, contextvars.copy_context()))
        for e in events:
            self._unsent[e.case_id] = self._unsent.get(e.case_id, 0) + 1
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="case-event-batches")

    async def _send_queued(self) -> None:
        await asyncio.sleep(self.batch_wait_s)
        while self._queued:  # what queued up meanwhile is the next batch
            batch, self._queued = self._queued, []
            try:
                await asyncio.gather(*(asyncio.create_task(self._publish(events),
                                                           context=context)
                                       for events, context in batch))
            finally:
                for events, _ in batch:
                    for e in events:
                        if self._unsent[e.case_id] > 1:
                            self._unsent[e.case_id] -= 1
                        else:
                            del self._unsent[e.case_id]

    async def flush(self) -> None:
        keys, self._published = self._published, []
        try:
            await self.store.mark_published(keys)
        except Exception:
            self._published += keys
            raise

    async def relay(self, flush_s: float = 0.2) -> None:
        """Write the marks, and publish events left unpublished (a crash, a NATS outage),
        until the bus closes."""
        since_relay = 0.0
        while not self.bus.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.flush()
                if since_relay >= self.relay_every_s:
                    since_relay = 0.0
                    pending = await self.store.unpublished(self.relay_grace)
                    if pending and await self.publish(pending):
                        log.info("case_events_relayed", events=len(pending))
            await asyncio.sleep(flush_s)
            since_relay += flush_s
