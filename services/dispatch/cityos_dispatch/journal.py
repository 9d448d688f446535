"""Dispatch events onto NATS (`dispatch.events.<case_id>`).

An event that follows from a case event or a timer has an id derived from it (`routed-12-5`),
so handling the same cause twice (a redelivery, a retried timer) publishes one event: the
stream drops the duplicate msg id. Other events get a fresh id.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from cityos_contracts.dispatch import DispatchEvent, Emergency
from cityos_contracts.subjects import DISPATCH_EVENTS, EMERGENCIES
from cityos_kit.bus import Bus

SYSTEM = "system:dispatch"


class Journal:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def record(self, case_id: int, kind: str, *, event_id: str | None = None,
                     actor: str = SYSTEM, at: datetime | None = None,
                     **fields: Any) -> DispatchEvent:
        event = DispatchEvent(event_id=event_id or uuid.uuid4().hex, case_id=case_id,
                              kind=kind, at=at or datetime.now(UTC), actor=actor,  # type: ignore[arg-type]
                              **fields)
        await self.bus.publish(DISPATCH_EVENTS.format(case_id=str(case_id)), event,
                               msg_id=f"dispatch:{event.event_id}")
        return event

    async def emergency(self, emergency: Emergency) -> None:
        state = "ended" if emergency.ended_at else "declared"
        await self.bus.publish(
            EMERGENCIES.format(emergency_id=str(emergency.emergency_id)), emergency,
            msg_id=f"emergency:{emergency.emergency_id}:{state}")
