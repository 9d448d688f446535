"""Dispatch's background work on a thread and event loop of its own: the case-event consumer
(an accepted case -> its dispatch) and the deadline timers.

The HTTP API runs on the main loop, and it is busy: a thousand field staff report their
positions every few seconds. Sharing that loop, an acceptance waited its turn behind every
request the loop had taken in (seconds when the machine was short of CPU). Here it has a loop
of its own, with its own NATS connection and database pool; the interpreter lock still hands
this thread the CPU every few milliseconds, however many requests are queued on the main loop.
"""

import asyncio
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future

import asyncpg

from cityos_dispatch.consumers import start_consumers
from cityos_dispatch.dispatcher import Dispatcher
from cityos_dispatch.timers import TimerLoop
from cityos_kit import db
from cityos_kit.bus import Bus
from cityos_kit.config import Settings

MakeDispatcher = Callable[[asyncpg.Pool, Bus], Dispatcher]


async def keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in a dispatch pool needs no reset query (a round trip on every
    release): dispatch leaves no session state, only transactions, which asyncpg rolls back."""


SWITCH_INTERVAL_S = 0.001

# Dispatch's pools (the API's and the worker's).
POOL_OPTIONS = {"reset": keep_session}


class Worker:
    def __init__(self, settings: Settings, schema: str, make: MakeDispatcher,
                 pool_size: int) -> None:
        """`make(pool, bus)`: the dispatcher, on the worker's loop; `pool_size`: its
        connections (one per case handled at once, one for the timers)."""
        self.settings, self.schema, self.make = settings, schema, make
        self.pool_size = pool_size
        self.dispatcher: Dispatcher | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._warming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Returns once the consumer and the timers run (raises what stopped them starting)."""
        # When the worker's socket has data while the API's thread is busy in Python, the
        # worker waits for the interpreter lock up to the switch interval (5 ms by default),
        # at every step of a case (NATS, each database answer, the hub's answer): 1 ms.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        started: Future[None] = Future()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(started),),
                                        name="dispatch-worker", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)

    def forget_rules(self) -> None:
        """The rules were edited (on the API's loop): the next routing here reads them again.
        (Only a timestamp is written across threads.)"""
        if self.dispatcher is not None:
            self.dispatcher.forget_rules()

    async def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def _main(self, started: Future[None]) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            pool = await db.create_pool(self.settings, self.schema, max_size=self.pool_size,
                                        **POOL_OPTIONS)
        except BaseException as exc:
            started.set_exception(exc)
            raise
        bus = Bus(self.settings)
        try:
            await bus.connect()
            dispatcher = self.dispatcher = self.make(pool, bus)
            self._warming = asyncio.create_task(dispatcher.hub.warm())
            start_consumers(bus, dispatcher)
            timers = TimerLoop(pool, dispatcher.store, dispatcher.remind, dispatcher.fire,
                               dispatcher.settings.tick_s)
            timers.start()
        except BaseException as exc:
            started.set_exception(exc)
            await bus.close()
            await pool.close()
            raise
        started.set_result(None)
        try:
            await self._stopping.wait()
            await timers.stop()
        finally:
            await bus.close()  # the consumer stops (a message mid-way is handed back)
            await pool.close()
