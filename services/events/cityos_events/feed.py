"""The live feed of case events for the screens, as server-sent events.

Each client gets an ordered JetStream consumer (ephemeral, nothing kept on the server): from
now on, or from the stream position after `Last-Event-ID` / `since`, so a screen that
reconnects misses nothing. The SSE `id` is the stream sequence.
"""

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEventMessage
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from cityos_contracts.subjects import CASE_EVENTS
from cityos_events.history import STREAM
from cityos_kit.bus import Bus

KEEPALIVE_S = 15.0


class _Kind(msgspec.Struct):
    kind: str


async def case_events(bus: Bus, case_id: int | None, since: int | None,
                      max_events: int | None) -> AsyncIterator[ServerSentEventMessage]:
    subject = bus.subject(CASE_EVENTS.format(case_id=str(case_id)) if case_id is not None
                          else CASE_EVENTS.wildcard())
    queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=10_000)

    async def on_message(msg: Msg) -> None:
        await queue.put(msg)

    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=since) \
        if since else ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
    sub = await bus.js.subscribe(subject, cb=on_message, ordered_consumer=True,
                                 stream=bus.stream_name(STREAM), config=config)
    decoder = msgspec.json.Decoder(_Kind)
    try:
        sent = 0
        while max_events is None or sent < max_events:
            try:
                msg = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            kind = decoder.decode(msg.data).kind
            yield ServerSentEventMessage(data=msg.data.decode(), event=kind,
                                         id=str(msg.metadata.sequence.stream))
            sent += 1
    finally:
        await sub.unsubscribe()
