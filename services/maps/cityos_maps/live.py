"""The live state of the screens and its fan-out: vehicles, sensors and cases from NATS, pushed
to every connected screen as server-sent events.

- Observations: a core-NATS subscription to `obs.*` (no consumer state: a screen wants the
  newest position, not every fix; after a restart the next batches, ~10 s, fill the map).
  Field staff on duty are the positions of the datasets the themes' `staff` layers name.
- Cases: an ordered JetStream consumer on the case-event stream from its first message, so the
  read model is whole after a restart, then live.
- Every `push_interval_s`, what changed goes to each screen's queue in one message per kind; a
  screen that cannot keep up is sent a full snapshot instead of a growing backlog.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from cityos_contracts.records import ObservationBatch
from cityos_contracts.subjects import CASE_EVENTS, OBSERVATIONS, STREAMS
from cityos_kit.bus import Bus
from cityos_kit.telemetry import logger
from cityos_maps.cases import CaseBoard, StreamEvent
from cityos_maps.config import MapsSettings
from cityos_maps.positions import Positions, StaffPositions, columns

log = logger("cityos.maps.live")
CASE_STREAM = next(s for s in STREAMS if CASE_EVENTS in s.subjects)
QUEUE_DEPTH = 32
RESYNC = ("resync", b"")
PRUNE_EVERY_S = 600.0


@dataclass(eq=False)
class Screen:
    """One connected screen: its theme and the messages waiting for it."""

    theme: str
    queue: asyncio.Queue[tuple[str, bytes]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_DEPTH))

    def offer(self, event: str, data: bytes) -> None:
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:  # too slow: drop the backlog, send it everything anew
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class Live:
    def __init__(self, settings: MapsSettings, cases: CaseBoard,
                 staff_datasets: frozenset[str] = frozenset()) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self.vehicles = Positions(settings.vehicle_set, settings.position_max_age_s)
        self.sensors = Positions(settings.sensor_set, settings.position_max_age_s)
        self.staff = StaffPositions(staff_datasets, settings.position_max_age_s)
        self.cases = cases
        self.screens: set[Screen] = set()
        self.replayed = asyncio.Event()
        self._changed_cases: set[int] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._obs_decoder = msgspec.json.Decoder(ObservationBatch)
        self._case_decoder = msgspec.json.Decoder(StreamEvent)
        # Called once per push with the themes screens are on: answers encoded boards.
        self.boards: Callable[[set[str]], Any] | None = None

    # -- time ------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC)

    def midnight(self) -> datetime:
        local = datetime.now(self.tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0)

    # -- NATS --------------------------------------------------------------------------------------
    async def start(self, bus: Bus) -> None:
        self._subs.append(await bus.nc.subscribe(bus.subject(OBSERVATIONS.wildcard()),
                                                 cb=self._on_observations))
        await self._follow_cases(bus)
        self._tasks.append(asyncio.create_task(self._push_loop(), name="maps-push"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_observations(self, msg: Msg) -> None:
        dataset = msg.subject.rsplit(".", 1)[-1]
        board = self.staff if self.staff.wants(dataset) else \
            self.vehicles if self.vehicles.wants(dataset) else \
            self.sensors if self.sensors.wants(dataset) else None
        if board is None:
            return
        try:
            board.apply(self._obs_decoder.decode(msg.data))
        except msgspec.DecodeError as exc:
            log.warning("bad_observation_batch", subject=msg.subject, error=str(exc))

    async def _follow_cases(self, bus: Bus) -> None:
        stream = bus.stream_name(CASE_STREAM)
        try:
            last = (await bus.js.stream_info(stream)).state.last_seq
        except NotFoundError:
            last = 0
        if last == 0:
            self.replayed.set()

        async def on_event(msg: Msg) -> None:
            seq = msg.metadata.sequence.stream if msg.metadata else 0
            try:
                row = self.cases.apply(self._case_decoder.decode(msg.data))
            except msgspec.DecodeError as exc:
                log.warning("bad_case_event", subject=msg.subject, error=str(exc))
                row = None
            self.cases.last_stream_seq = seq
            if row is not None:
                self._changed_cases.add(row.case_id)
            if not self.replayed.is_set() and seq >= last:
                self.replayed.set()
                log.info("cases_replayed", cases=len(self.cases.cases),
                         events=self.cases.events_applied)

        self._subs.append(await bus.js.subscribe(
            bus.subject(CASE_EVENTS.wildcard()), cb=on_event, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, stream=stream))

    # -- screens -----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def screen(self, theme: str) -> AsyncIterator[Screen]:
        screen = Screen(theme)
        self.screens.add(screen)
        try:
            yield screen
        finally:
            self.screens.discard(screen)

    def snapshot(self) -> list[tuple[str, bytes]]:
        """Everything a screen needs on connecting (or after falling behind)."""
        now = self.now()
        open_cases = [self.cases.view(r, now) for r in self.cases.cases.values() if r.open]
        return [
            ("vehicles", msgspec.json.encode(columns(self.vehicles.all(), full=True))),
            ("sensors", msgspec.json.encode(columns(self.sensors.all(), full=True))),
            ("staff", msgspec.json.encode(columns(self.staff.all(), full=True))),
            ("cases", msgspec.json.encode({"full": True, "items": open_cases})),
        ]

    async def push_once(self) -> None:
        """Send every screen what changed since the last push, then its theme's board."""
        gone_v, gone_s = self.vehicles.expire(), self.sensors.expire()
        gone_staff, staff = self.staff.expire(), self.staff.take_changes()
        vehicles, sensors = self.vehicles.take_changes(), self.sensors.take_changes()
        changed_cases, self._changed_cases = self._changed_cases, set()
        if not self.screens:
            return
        now = self.now()
        messages: list[tuple[str, bytes]] = []
        if vehicles or gone_v:
            messages.append(("vehicles", msgspec.json.encode(columns(vehicles, gone_v))))
        if sensors or gone_s:
            messages.append(("sensors", msgspec.json.encode(columns(sensors, gone_s))))
        if staff or gone_staff:
            messages.append(("staff", msgspec.json.encode(columns(staff, gone_staff))))
        if changed_cases:
            items = [self.cases.view(self.cases.cases[c], now) for c in sorted(changed_cases)]
            messages.append(("cases", msgspec.json.encode({"full": False, "items": items})))
        boards: dict[str, bytes] = {}
        if self.boards is not None:
            boards = await self.boards({s.theme for s in self.screens})
        for screen in list(self.screens):
            for event, data in messages:
                screen.offer(event, data)
            if screen.theme in boards:
                screen.offer("board", boards[screen.theme])

    async def _push_loop(self) -> None:
        pruned_at = 0.0
        while True:
            await asyncio.sleep(self.settings.push_interval_s)
            try:
                if time.monotonic() - pruned_at > PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    self.cases.prune(self.now() - timedelta(days=self.settings.finished_case_days))
                await self.push_once()
            except Exception:  # the loop must outlive one bad push
                log.exception("push_failed")
