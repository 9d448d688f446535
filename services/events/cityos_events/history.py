"""A case's history read back from the NATS stream, to rebuild or check the store."""

import asyncio

import msgspec
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from cityos_contracts.cases import CaseEvent
from cityos_contracts.subjects import CASE_EVENTS, STREAMS
from cityos_kit.bus import Bus

STREAM = next(s for s in STREAMS if CASE_EVENTS in s.subjects)


async def replay(bus: Bus, case_id: int | None = None, timeout_s: float = 10.0
                 ) -> list[CaseEvent]:
    """Every event on the stream of one case (all cases when None), in stream order."""
    stream = bus.stream_name(STREAM)
    subject = bus.subject(CASE_EVENTS.format(case_id=str(case_id)) if case_id is not None
                          else CASE_EVENTS.wildcard())
    # Read up to the last message there is now, then stop.
    try:
        if case_id is not None:
            last = (await bus.js.get_last_msg(stream, subject)).seq or 0
        else:
            last = (await bus.js.stream_info(stream)).state.last_seq
    except NotFoundError:
        return []
    decoder = msgspec.json.Decoder(CaseEvent)
    events: list[CaseEvent] = []
    # An ordered consumer: ephemeral, from the start, nothing left on the server afterwards.
    sub = await bus.js.subscribe(subject, ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.ALL, stream=stream)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = await sub.next_msg(timeout=timeout_s)
                events.append(decoder.decode(msg.data))
                if msg.metadata.sequence.stream >= last:
                    return events
    finally:
        await sub.unsubscribe()
