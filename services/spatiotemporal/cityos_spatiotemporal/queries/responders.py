"""Queries other services ask over NATS request/reply (subjects in cityos_contracts.subjects).

Replicas share a queue group, so each request is answered once. The reply is the result
Struct, or a QueryError carrying the status and reason the HTTP route would have given. NATS
permissions decide who may send requests; there is no bearer token on the bus.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from litestar.exceptions import HTTPException
from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind

from cityos_contracts.stquery import QueryError
from cityos_contracts.subjects import BOX_QUERY, NEAREST_QUERY, REACHABLE_QUERY, RequestSubject
from cityos_kit.bus import Bus
from cityos_kit.telemetry import extract_context, logger, tracer
from cityos_spatiotemporal.queries import boxselect, isochrone, nearest

QUEUE = "spatiotemporal"
log = logger("cityos.stquery")
_tracer = tracer("cityos.stquery")

Answer = Callable[[asyncpg.Pool, Any], Awaitable[msgspec.Struct]]
ANSWERS: tuple[tuple[RequestSubject, Answer], ...] = (
    (NEAREST_QUERY, nearest.nearest),
    (BOX_QUERY, boxselect.box_select),
    (REACHABLE_QUERY, isochrone.reachable),
)


async def _answer(subject: RequestSubject, answer: Answer, pool: asyncpg.Pool,
                  msg: Msg) -> bytes:
    try:
        query = msgspec.json.decode(msg.data, type=subject.request)
    except msgspec.DecodeError as exc:  # includes validation errors
        return msgspec.json.encode(QueryError(status=400, detail=str(exc)))
    try:
        return msgspec.json.encode(await answer(pool, query))
    except HTTPException as exc:
        return msgspec.json.encode(QueryError(status=exc.status_code, detail=str(exc.detail)))
    except Exception:
        log.exception("query_failed", subject=subject.pattern)
        return msgspec.json.encode(QueryError(status=500, detail="internal error"))


async def start_responders(bus: Bus, pool: asyncpg.Pool) -> None:
    for subject, answer in ANSWERS:
        async def on_request(msg: Msg, subject: RequestSubject = subject,
                             answer: Answer = answer) -> None:
            with _tracer.start_as_current_span(
                    f"answer {subject.pattern}", context=extract_context(msg.headers),
                    kind=SpanKind.SERVER,
                    attributes={"messaging.system": "nats",
                                "messaging.destination.name": subject.pattern}):
                reply = await _answer(subject, answer, pool, msg)
            if msg.reply:
                await msg.respond(reply)

        await bus.nc.subscribe(bus.subject(subject.pattern), queue=QUEUE, cb=on_request)
