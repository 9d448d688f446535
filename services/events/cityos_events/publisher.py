"""Case events onto NATS, after the transaction that recorded them commits (an outbox).

The events are rows first, so a crash between commit and publish loses nothing: the relay
publishes what is still unmarked. The msg id `case:<id>:<seq>` makes a second publish of the
same event a no-op within the stream's duplicate window, and `seq` lets readers order and
deduplicate beyond it.
"""

import asyncio
import contextlib
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

    async def publish(self, events: Sequence[CaseEvent]) -> bool:
        """Publish in seq order (one connection keeps the order); False if NATS failed and
        the relay will retry."""
        if not events:
            return True
        try:
            await asyncio.gather(*(self.bus.publish(
                CASE_EVENTS.format(case_id=str(e.case_id)), e, msg_id=f"case:{e.case_id}:{e.seq}")
                for e in events))
        except Exception as exc:
            log.warning("case_event_publish_failed", error=repr(exc), events=len(events))
            return False
        await self.store.mark_published(events)
        return True

    async def relay(self, interval_s: float = 5.0, grace: timedelta = timedelta(seconds=10)
                    ) -> None:
        """Publish events left unpublished (a crash, a NATS outage) until the bus closes."""
        while not self.bus.nc.is_closed:
            with contextlib.suppress(Exception):
                pending = await self.store.unpublished(grace)
                if pending and await self.publish(pending):
                    log.info("case_events_relayed", events=len(pending))
            await asyncio.sleep(interval_s)
