"""NATS JetStream: streams declared in code, publish with a dedupe id, durable pull consumers.

Delivery is at-least-once: a handler's work must be idempotent, and the message is acked only
after the handler returns (its transaction committed). A message that cannot be decoded, or
that keeps failing, goes to the dead-letter subject with the reason instead of looping forever.
"""

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cityos_contracts.datasets import DeadLetter
from cityos_contracts.subjects import DEAD_LETTERS, Stream
from cityos_kit.config import Settings
from cityos_kit.telemetry import extract_context, inject_headers, logger, tracer

T = TypeVar("T", bound=msgspec.Struct)
Handler = Callable[[T, Msg], Awaitable[None]]


@dataclass(frozen=True)
class Delivery(Generic[T]):
    """One decoded message of a batch, with the trace it belongs to."""

    message: T
    msg: Msg
    subject: str  # relative to the namespace

    @contextlib.contextmanager
    def span(self) -> Iterator[trace.Span]:
        """Work done for this message, as a span in the message's own trace."""
        with _tracer.start_as_current_span(
            f"process {self.subject}", context=extract_context(self.msg.headers),
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.destination.name": self.subject},
        ) as current:
            yield current


BatchHandler = Callable[[list[Delivery[T]]], Awaitable[None]]

log = logger("cityos.bus")
_tracer = tracer("cityos.bus")


class PermanentError(Exception):
    """The message can never be processed (bad content): dead-letter it, do not retry."""


class Bus:
    """One NATS connection of a service, with the deployment's subject namespace."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.nats_prefix
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- connection ---------------------------------------------------------------------
    async def connect(self) -> None:
        options: dict[str, Any] = {"name": self.settings.service, "max_reconnect_attempts": -1}
        if self.settings.nats_user:
            options |= {"user": self.settings.nats_user, "password": self.settings.nats_password}
        self._nc = await nats.connect(self.settings.nats_url, **options)
        self._js = self._nc.jetstream(timeout=10)

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("bus is not connected")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("bus is not connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def close(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        # Every publish already awaited its JetStream ack, so nothing is pending: close.
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    # -- names ----------------------------------------------------------------------------
    def subject(self, relative: str) -> str:
        return f"{self.prefix}.{relative}"

    def stream_name(self, stream: Stream) -> str:
        return f"{self.settings.stream_prefix}_{stream.name}"

    def relative(self, subject: str) -> str:
        return subject.removeprefix(self.prefix + ".")

    # -- streams ----------------------------------------------------------------------------
    async def ensure_streams(self, streams: Iterable[Stream]) -> None:
        """Create or update each stream: file storage, replicas from the deployment."""
        for stream in streams:
            name = self.stream_name(stream)
            config = StreamConfig(
                name=name,
                description=stream.description,
                subjects=[self.subject(s.wildcard()) for s in stream.subjects],
                storage=StorageType.FILE,
                num_replicas=self.settings.stream_replicas,
                max_age=stream.max_age_days * 86400,
                duplicate_window=stream.duplicate_window_s,
            )
            try:
                await self.js.stream_info(name)
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)

    async def delete_streams(self, streams: Iterable[Stream]) -> None:
        for stream in streams:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_stream(self.stream_name(stream))

    # -- publish ----------------------------------------------------------------------------
    async def publish(self, relative_subject: str, message: msgspec.Struct, msg_id: str) -> bool:
        """Publish durably; returns False when JetStream already had this id (a duplicate)."""
        subject = self.subject(relative_subject)
        with _tracer.start_as_current_span(
            f"publish {relative_subject}", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject,
                        "messaging.message.id": msg_id},
        ):
            headers = inject_headers({"Nats-Msg-Id": msg_id})
            ack = await self.js.publish(subject, msgspec.json.encode(message), headers=headers)
            return not ack.duplicate

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        """Keep an unprocessable message, with the reason, on the dead-letter subject."""
        relative = self.relative(msg.subject)
        letter = DeadLetter(
            dataset=relative.rsplit(".", 1)[-1], version=None,
            batch_id=(msg.headers or {}).get("Nats-Msg-Id", ""), row=0, reason=reason,
            raw=msg.data.decode("utf-8", "replace"), received_at=datetime.now(UTC),
        )
        seq = msg.metadata.sequence.stream if msg.metadata else 0
        await self.publish(DEAD_LETTERS.format(dataset=letter.dataset), letter,
                           msg_id=f"dl:{relative}:{seq}")
        log.warning("dead_letter", subject=relative, reason=reason)

    # -- consume ----------------------------------------------------------------------------
    def consume(
        self,
        stream: Stream,
        durable: str,
        message_type: type[T],
        handler: Handler[T],
        filter_subject: str | None = None,
        batch: int = 16,
        max_deliver: int = 8,
        ack_wait_s: float | None = None,
        parallel: int = 1,
        start_time: datetime | None = None,
    ) -> None:
        """Run `handler` on each message of a durable pull consumer, in the background.

        `parallel` > 1: up to that many messages are handled at once, but one subject's in
        stream order, each after the one before (a subject per entity, `cases.events.<id>`:
        a slow case holds up only its own later events, not every other case's).
        `start_time`: where a durable created now starts (messages stored since then; None:
        the stream's beginning); a durable that exists resumes where it was.
        """
        self._tasks.append(asyncio.create_task(
            self._consume_loop(stream, durable, message_type, handler, filter_subject, batch,
                               max_deliver, ack_wait_s, parallel=parallel,
                               start_time=start_time),
            name=f"consume:{durable}",
        ))

    def consume_batches(
        self,
        stream: Stream,
        durable: str,
        message_type: type[T],
        handler: BatchHandler[T],
        filter_subject: str | None = None,
        batch: int = 8,
        max_deliver: int = 8,
        ack_wait_s: float | None = None,
        start_time: datetime | None = None,
    ) -> None:
        """Like `consume`, but `handler` gets up to `batch` messages to commit in one go.

        Amortises per-transaction work (high-rate streams). If a batch fails, its messages are
        retried one by one, so a single bad message is isolated and dead-lettered alone.
        """

        async def one(message: T, msg: Msg) -> None:
            await handler([Delivery(message, msg, self.relative(msg.subject))])

        self._tasks.append(asyncio.create_task(
            self._consume_loop(stream, durable, message_type, one, filter_subject, batch,
                               max_deliver, ack_wait_s, batch_handler=handler,
                               start_time=start_time),
            name=f"consume:{durable}",
        ))

    async def _consume_loop(
        self, stream: Stream, durable: str, message_type: type[T], handler: Handler[T],
        filter_subject: str | None, batch: int, max_deliver: int, ack_wait_s: float | None,
        batch_handler: BatchHandler[T] | None = None, parallel: int = 1,
        start_time: datetime | None = None,
    ) -> None:
        subject = self.subject(filter_subject) if filter_subject else None
        config = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_TIME if start_time else DeliverPolicy.ALL,
            opt_start_time=start_time,
            ack_wait=ack_wait_s or self.settings.ack_wait_s, max_ack_pending=batch * 64,
            filter_subject=subject,
        )
        sub = await self.js.pull_subscribe(
            subject or "", durable=durable, stream=self.stream_name(stream), config=config
        )
        decoder = msgspec.json.Decoder(message_type)
        lanes = _Lanes(parallel) if parallel > 1 else None
        draining = False
        try:
            while not self._stopping.is_set():
                try:
                    if draining and lanes is not None:
                        # Messages came: take what else is there, for the free lanes, in one
                        # request (waiting at most 10 ms), not a round trip each.
                        msgs = await sub.fetch(max(1, lanes.free), timeout=0.01)
                    else:
                        msgs = await sub.fetch(batch, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):  # nothing to do (nats-py raises
                    draining = False                               # either, depending on timing)
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                    return
                except Exception as exc:  # a consumer must outlive a hiccup of the server
                    log.warning("fetch_failed", durable=durable, error=repr(exc))
                    await asyncio.sleep(1)
                    continue
                draining = True
                if batch_handler is not None and len(msgs) > 1 and await self._handle_batch(
                        msgs, decoder, batch_handler):
                    continue
                for msg in msgs:
                    if lanes is None:
                        await self._handle(msg, decoder, handler, max_deliver)
                    else:
                        await lanes.start(msg.subject, functools.partial(
                            self._handle, msg, decoder, handler, max_deliver))
        finally:
            if lanes is not None:
                await lanes.cancel()

    async def _handle_batch(self, msgs: list[Msg], decoder: msgspec.json.Decoder[T],
                            handler: BatchHandler[T]) -> bool:
        """True if the whole batch was handled and acked; False to retry one by one."""
        try:
            deliveries = [Delivery(decoder.decode(m.data), m, self.relative(m.subject))
                          for m in msgs]
            await handler(deliveries)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.gather(*(m.nak() for m in msgs)))
            raise
        except Exception as exc:
            log.info("batch_failed_retrying_singly", error=repr(exc), messages=len(msgs))
            return False
        for m in msgs:
            await m.ack()
        return True

    async def _handle(
        self, msg: Msg, decoder: msgspec.json.Decoder[T], handler: Handler[T], max_deliver: int
    ) -> None:
        context = extract_context(msg.headers)
        relative = self.relative(msg.subject)
        with _tracer.start_as_current_span(
            f"process {relative}", context=context, kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.destination.name": msg.subject},
        ) as span:
            try:
                try:
                    message = decoder.decode(msg.data)
                except msgspec.DecodeError as exc:
                    raise PermanentError(f"cannot decode {relative}: {exc}") from exc
                await handler(message, msg)
            except PermanentError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self.dead_letter(msg, str(exc))
                await msg.ack()
            except asyncio.CancelledError:
                # Stopping mid-message: hand it back now rather than after ack_wait.
                with contextlib.suppress(Exception):
                    await asyncio.shield(msg.nak())
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                delivered = msg.metadata.num_delivered if msg.metadata else 1
                if delivered >= max_deliver:
                    await self.dead_letter(msg, f"failed {delivered} times, last: {exc!r}")
                    await msg.ack()
                else:
                    log.warning("handler_failed_retrying", subject=relative, error=repr(exc),
                                delivered=delivered)
                    await msg.nak(delay=min(2.0**delivered, 30.0))
            else:
                await msg.ack()


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class _Lanes:
    """Handlers running side by side, at most `width`; those of one key one after another, in
    the order they were started. A handler settles its own message (ack, nak or dead letter),
    so the next of its key starts whatever the outcome."""

    def __init__(self, width: int) -> None:
        self._slots = asyncio.Semaphore(width)
        self.free = width
        self._last: dict[str, asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Returns once `work` has a slot (waiting for a free one: back-pressure on fetch)."""
        await self._slots.acquire()
        self.free -= 1
        task = asyncio.create_task(self._after(self._last.get(key), work))
        self._last[key] = task
        self._running.add(task)
        task.add_done_callback(functools.partial(self._done, key))

    @staticmethod
    async def _after(before: "asyncio.Task[None] | None", work: Callable[[], Awaitable[None]]
                     ) -> None:
        if before is not None:
            await asyncio.wait([before])
        await work()

    def _done(self, key: str, task: "asyncio.Task[None]") -> None:
        self._slots.release()
        self.free += 1
        self._running.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    async def cancel(self) -> None:
        """Stopping: the running handlers hand their messages back (nak)."""
        running = set(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
