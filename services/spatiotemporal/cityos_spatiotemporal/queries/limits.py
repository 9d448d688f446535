"""Every query is bounded: its window, its area, its page, and its time in the database."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg

from cityos_spatiotemporal.queries.errors import BadQuery

MAX_WINDOW = timedelta(days=7)
MAX_FLEET_WINDOW = timedelta(days=2)  # stay points of a whole fleet
MAX_RANGE_AREA_KM2 = 1000.0
MAX_BOX_AREA_KM2 = 5000.0
MAX_TRACK_FIXES = 200_000  # one subject's fixes in a trajectory or deviation query
MAX_CELL_GROUPS = 200_000  # cells x buckets of an aggregate
QUERY_TIMEOUT_MS = 5_000
HEAVY_TIMEOUT_MS = 120_000  # fleet stay points, network rebuilds


def check_window(start: datetime, end: datetime, longest: timedelta = MAX_WINDOW) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise BadQuery(detail="start and end need a time zone, e.g. 2026-11-21T08:00:00+08:00")
    if end <= start:
        raise BadQuery(detail=f"the time window is reversed or empty: end {end.isoformat()} is "
                              f"not after start {start.isoformat()}")
    if end - start > longest:
        raise BadQuery(detail=f"the time window is {end - start}, longer than the limit of "
                              f"{longest}; split it")


@asynccontextmanager
async def bounded(pool: asyncpg.Pool, timeout_ms: int = QUERY_TIMEOUT_MS, *,
                  readonly: bool = True) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction whose statements are cancelled after `timeout_ms`; a
    cancelled query is a 422 telling the caller to narrow it, never a hung request."""
    async with pool.acquire() as conn:
        try:
            async with conn.transaction(readonly=readonly):
                await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
                yield conn
        except asyncpg.QueryCanceledError as exc:
            raise BadQuery(detail=f"the query took longer than {timeout_ms / 1000:g} s and was "
                                  "stopped: narrow its area, window or filters") from exc
