"""Dispatch's stream handler: every case event of the event hub, in stream order."""

from nats.aio.msg import Msg

from cityos_contracts.cases import CaseEvent
from cityos_contracts.subjects import CASE_EVENTS, STREAMS
from cityos_dispatch.dispatcher import Dispatcher
from cityos_kit.bus import Bus

_STREAM = next(s for s in STREAMS if CASE_EVENTS in s.subjects)
DURABLE = "dispatch-cases"


def start_consumers(bus: Bus, dispatcher: Dispatcher) -> None:
    async def on_case_event(event: CaseEvent, msg: Msg) -> None:
        # A hub that cannot be reached raises: the message is retried (nak with backoff).
        await dispatcher.on_case_event(event)

    # One message per fetch: nats-py's fetch of n waits (up to its timeout) for n messages
    # once the first has come, so an acceptance could sit there behind a quiet stream. Cases
    # side by side (a subject per case): an acceptance waits for no other case's events.
    bus.consume(_STREAM, DURABLE, CaseEvent, on_case_event,
                filter_subject=CASE_EVENTS.wildcard(), batch=1, max_deliver=50,
                parallel=dispatcher.settings.consumer_parallel)
