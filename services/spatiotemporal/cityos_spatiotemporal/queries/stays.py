"""Query 4, stay points from the store: on demand for a vehicle or a fleet, stored, and kept up
to date as fixes arrive (`StayTracker`)."""

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from cityos_contracts.stquery import (
    StayPointFeature,
    StayPointParams,
    StayPointProps,
    StayPointQuery,
    StayPoints,
)
from cityos_spatiotemporal.queries import catalog, limits, staypoints
from cityos_spatiotemporal.queries.errors import BadQuery
from cityos_spatiotemporal.store import subject_key

DEFAULT_PARAMS = StayPointParams()
# How far back a recomputation may reach (a late fix, or a subject seen for the first time).
LOOKBACK = timedelta(hours=24)
MAX_FLEET_FIXES = 40_000_000
STORED_POLLS = 20  # x 0.25 s


def algorithm_params(p: StayPointParams) -> staypoints.Params:
    return staypoints.Params(p.distance_m, p.duration_s, p.max_gap_s, p.include_last)


# -- reading tracks -------------------------------------------------------------------------------

# Each subject's fixes as three packed big-endian float8 arrays: 24 bytes a fix on the wire and
# one numpy frombuffer to read, instead of a Python object per value.
_TRACKS = """
    SELECT subject, count(*) AS n,
           string_agg(float8send(date_part('epoch', ts)), ''::bytea ORDER BY ts) AS t,
           string_agg(float8send(lon), ''::bytea ORDER BY ts) AS x,
           string_agg(float8send(lat), ''::bytea ORDER BY ts) AS y
    FROM (SELECT DISTINCT ON (subject, ts) subject, ts, lon, lat FROM observations
          WHERE ts >= $2 AND ts < $3 AND dataset = $1
            AND ($4::bigint[] IS NULL OR subject_key = ANY($4) AND subject = ANY($5))
          ORDER BY subject, ts, lon, lat) o
    GROUP BY subject ORDER BY subject
"""


@dataclass(frozen=True)
class Tracks:
    subjects: list[str]
    fixes: staypoints.Fixes


def _unpack(rows: Sequence[asyncpg.Record]) -> Tracks:
    counts = np.array([r["n"] for r in rows], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)

    def column(name: str) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        return np.frombuffer(b"".join(r[name] for r in rows), dtype=">f8").astype(np.float64)

    return Tracks([r["subject"] for r in rows],
                  staypoints.Fixes(offsets, column("t"), column("x"), column("y")))


async def read_tracks(conn: asyncpg.Connection, dataset: str, start: datetime, end: datetime,
                      subjects: list[str] | None) -> Tracks:
    """Fixes per subject in time order, one per (subject, time): of fixes sent twice with one
    time, the westernmost (any fixed rule will do, as long as every reader uses it)."""
    keys = None if subjects is None else [subject_key(dataset, s) for s in subjects]
    return _unpack(await conn.fetch(_TRACKS, dataset, start, end, keys, subjects))


# -- results ----------------------------------------------------------------------------------------


def _ts(x: float) -> datetime:
    return datetime.fromtimestamp(x, UTC)


@dataclass(frozen=True)
class StayRow:
    subject: str
    arrival: datetime
    departure: datetime
    lon: float
    lat: float
    fixes: int
    open: bool

    def feature(self, dataset: str, **match: Any) -> StayPointFeature:
        return StayPointFeature(
            geometry={"type": "Point", "coordinates": [round(self.lon, 7), round(self.lat, 7)]},
            properties=StayPointProps(
                dataset=dataset, subject=self.subject, arrival=self.arrival,
                departure=self.departure,
                duration_s=(self.departure - self.arrival).total_seconds(), fixes=self.fixes,
                open=self.open, **match))


def stay_rows(subjects: list[str], stays: staypoints.Stays) -> list[StayRow]:
    return [StayRow(subjects[g], _ts(a), _ts(d), x, y, n, o) for g, a, d, x, y, n, o in zip(
        stays.group.tolist(), stays.arrival.tolist(), stays.departure.tolist(),
        stays.lon.tolist(), stays.lat.tolist(), stays.fixes.tolist(), stays.open.tolist(),
        strict=True)]


async def compute(conn: asyncpg.Connection, dataset: str, start: datetime, end: datetime,
                  subjects: list[str] | None, params: StayPointParams) -> tuple[list[StayRow], int]:
    """Stay points in the window computed from the stored fixes; and how many fixes were read.

    A stay already under way at `start` begins, for this answer, at the first fix in the
    window (the window cuts it)."""
    limits.check_window(start, end, limits.MAX_WINDOW if subjects and len(subjects) == 1
                        else limits.MAX_FLEET_WINDOW)
    await catalog.require_observations(conn, dataset)
    if subjects is not None and len(subjects) == 1:
        await catalog.require_subject(conn, dataset, subjects[0])
    tracks = await read_tracks(conn, dataset, start, end, subjects)
    if len(tracks.fixes) > MAX_FLEET_FIXES:
        raise BadQuery(detail=f"more than {MAX_FLEET_FIXES:,} fixes: narrow the window")
    found, _ = staypoints.detect(tracks.fixes, algorithm_params(params))
    return stay_rows(tracks.subjects, found), len(tracks.fixes)


async def write(conn: asyncpg.Connection, dataset: str, key: str, rows: list[StayRow]) -> None:
    """Upsert by (dataset, params, subject, arrival): recomputing a stay updates it in place."""
    if not rows:
        return
    await conn.execute(
        "INSERT INTO stay_points AS s (dataset, params, subject, arrival, departure, lon, lat,"
        " geom, fixes, open)"
        " SELECT $1, $2, u.s, u.a, u.d, u.x, u.y, ST_SetSRID(ST_MakePoint(u.x, u.y), 4326),"
        " u.n, u.o FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[], $6::float8[],"
        " $7::float8[], $8::int[], $9::bool[]) AS u(s, a, d, x, y, n, o)"
        " ON CONFLICT (dataset, params, subject, arrival) DO UPDATE SET"
        " departure = EXCLUDED.departure, lon = EXCLUDED.lon, lat = EXCLUDED.lat,"
        " geom = EXCLUDED.geom, fixes = EXCLUDED.fixes, open = EXCLUDED.open,"
        " computed_at = now()",
        dataset, key, [r.subject for r in rows], [r.arrival for r in rows],
        [r.departure for r in rows], [r.lon for r in rows], [r.lat for r in rows],
        [r.fixes for r in rows], [r.open for r in rows])


async def on_demand(pool: asyncpg.Pool, q: StayPointQuery) -> StayPoints:
    timeout = limits.QUERY_TIMEOUT_MS if q.subjects and len(q.subjects) <= 10 \
        else limits.HEAVY_TIMEOUT_MS
    async with limits.bounded(pool, timeout, readonly=not q.store) as conn:
        rows, fixes = await compute(conn, q.dataset, q.start, q.end, q.subjects, q.params)
        if q.store:
            # The answer replaces what was stored for these subjects, window and parameters.
            await conn.execute(
                "DELETE FROM stay_points WHERE dataset = $1 AND params = $2 AND arrival >= $3"
                " AND arrival < $4 AND ($5::text[] IS NULL OR subject = ANY($5))",
                q.dataset, q.params.key(), q.start, q.end, q.subjects)
            await write(conn, q.dataset, q.params.key(), rows)
    return StayPoints(features=[r.feature(q.dataset) for r in rows], params=q.params,
                      fixes=fixes)


async def stored(conn: asyncpg.Connection, dataset: str, start: datetime, end: datetime,
                 subjects: list[str] | None, params: StayPointParams, limit: int
                 ) -> list[StayRow]:
    """Stored stay points arriving in the window (open ones only with `include_last`)."""
    limits.check_window(start, end)
    await catalog.require_observations(conn, dataset)
    # The incremental computation keeps open stays under the default key: a closed-only query
    # with the default parameters reads them too and leaves the open ones out.
    key = params.key()
    rows = await conn.fetch(
        "SELECT subject, arrival, departure, lon, lat, fixes, open FROM stay_points"
        " WHERE dataset = $1 AND params = $2 AND arrival >= $3 AND arrival < $4"
        " AND ($5::text[] IS NULL OR subject = ANY($5)) AND ($6 OR NOT open)"
        " ORDER BY arrival, subject LIMIT $7",
        dataset, DEFAULT_PARAMS.key() if _is_default(params) else key, start, end, subjects,
        params.include_last, limit)
    return [StayRow(**dict(r)) for r in rows]


def _is_default(p: StayPointParams) -> bool:
    return (p.distance_m, p.duration_s, p.max_gap_s) == (
        DEFAULT_PARAMS.distance_m, DEFAULT_PARAMS.duration_s, DEFAULT_PARAMS.max_gap_s)


# -- incremental -----------------------------------------------------------------------------------


class NotYetStored(Exception):
    """The fixes of a batch are not committed yet: try the batch again a little later."""


def tracked_datasets() -> set[str] | None:
    """CITYOS_STAYPOINT_DATASETS: comma-separated observation datasets to keep stay points of
    as fixes arrive; `*` (the default) for all."""
    value = os.environ.get("CITYOS_STAYPOINT_DATASETS", "*").strip()
    return None if value in ("", "*") else {v.strip() for v in value.split(",") if v.strip()}


@dataclass(frozen=True)
class Touch:
    """New fixes of a subject in a batch: the earliest and latest one's time."""

    dataset: str
    subject: str
    earliest: datetime
    latest: datetime


class StayTracker:
    """Keeps the default stay points of every tracked subject up to date, idempotently.

    Per subject it keeps where the current run started and the run's fix count and sums up to
    the last fix taken in (staypoint_cursors), so new fixes are processed without re-reading
    the run: the result equals a computation over the whole history. A fix older than the last
    one taken in (out of order, or committed late) restarts the subject from a point the run
    boundaries cannot have moved: the current run's start if the fix is after it, else the
    departure of the last stay before the fix, at most LOOKBACK back. Stay points from there on
    are deleted and recomputed; open stays (the vehicle has not left) are stored with open=true
    and closed in place when it leaves (same arrival).
    """

    def __init__(self, pool: asyncpg.Pool, params: StayPointParams = DEFAULT_PARAMS) -> None:
        self.pool = pool
        self.params = params
        self.key = params.key()
        self.algo = staypoints.Params(params.distance_m, params.duration_s, params.max_gap_s,
                                      include_last=True)
        self.datasets = tracked_datasets()

    def wants(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    async def take_in(self, batch_ids: list[str], touches: list[Touch]) -> None:
        """Process the fixes of these observation batches (skipping batches already taken in);
        raises NotYetStored if the storage consumer has not committed them yet."""
        # Both consumers get each batch at about the same time: give storage a moment first.
        for _ in range(STORED_POLLS):
            stored_ids = {r["batch_id"] for r in await self.pool.fetch(
                "SELECT batch_id FROM stored_batches WHERE batch_id = ANY($1)", batch_ids)}
            if stored_ids >= set(batch_ids):
                break
            await asyncio.sleep(0.25)
        else:
            raise NotYetStored(f"{len(set(batch_ids) - stored_ids)} batch(es) not stored yet")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL statement_timeout = {limits.HEAVY_TIMEOUT_MS}")
            fresh = await conn.fetch(
                "INSERT INTO staypoint_batches (batch_id) SELECT unnest($1::text[])"
                " ON CONFLICT DO NOTHING RETURNING batch_id", batch_ids)
            if not fresh:
                return  # a redelivery: everything here was taken in before
            by_dataset: dict[str, dict[str, tuple[datetime, datetime]]] = {}
            for t in touches:
                if self.wants(t.dataset):
                    subjects = by_dataset.setdefault(t.dataset, {})
                    lo, hi = subjects.get(t.subject, (t.earliest, t.latest))
                    subjects[t.subject] = (min(lo, t.earliest), max(hi, t.latest))
            for dataset, subjects in sorted(by_dataset.items()):
                await self._advance(conn, dataset, subjects)

    async def _advance(self, conn: asyncpg.Connection, dataset: str,
                       span: dict[str, tuple[datetime, datetime]]) -> None:
        """Take in each subject's fixes up to the latest one of these batches (later ones are
        read with their own batch, so their arrival is not mistaken for a late fix)."""
        names = sorted(span)
        # Lock the subjects' cursors (created if new) so replicas never interleave on one.
        await conn.execute(
            "INSERT INTO staypoint_cursors (dataset, subject, start_ts, start_lon, start_lat,"
            " last_ts, fixes, sum_lon, sum_lat) SELECT $1, s, to_timestamp(0), 0, 0,"
            " to_timestamp(0), 0, 0, 0 FROM unnest($2::text[]) s ON CONFLICT DO NOTHING",
            dataset, names)
        cursors = {r["subject"]: r for r in await conn.fetch(
            "SELECT * FROM staypoint_cursors WHERE dataset = $1 AND subject = ANY($2)"
            " ORDER BY subject FOR UPDATE", dataset, names)}
        carried: list[str] = []  # continue the open run from the cursor
        restart: dict[str, datetime] = {}  # recompute from this time
        for s in names:
            c, first_new = cursors[s], span[s][0]
            if c["fixes"] > 0 and first_new > c["last_ts"]:
                carried.append(s)
            else:
                restart[s] = await self._restart_point(conn, dataset, s, c, first_new)
        rows: list[StayRow] = []
        if carried:
            rows += await self._continue(conn, dataset, [cursors[s] for s in carried],
                                         [span[s][1] for s in carried])
        if restart:
            await conn.execute(
                "DELETE FROM stay_points p USING unnest($3::text[], $4::timestamptz[]) u(s, f)"
                " WHERE p.dataset = $1 AND p.params = $2 AND p.subject = u.s"
                " AND p.arrival >= u.f", dataset, self.key, list(restart),
                list(restart.values()))
            rows += await self._recompute(conn, dataset, restart,
                                          [span[s][1] for s in restart])
        await write(conn, dataset, self.key, rows)

    async def _restart_point(self, conn: asyncpg.Connection, dataset: str, subject: str,
                             cursor: asyncpg.Record, first_new: datetime) -> datetime:
        floor = first_new - LOOKBACK
        start: datetime = cursor["start_ts"]
        if cursor["fixes"] > 0 and first_new > start:
            return max(start, floor)
        departure = await conn.fetchval(
            "SELECT max(departure) FROM stay_points WHERE dataset = $1 AND params = $2"
            " AND subject = $3 AND NOT open AND departure < $4",
            dataset, self.key, subject, first_new)
        return max(departure or floor, floor)

    async def _continue(self, conn: asyncpg.Connection, dataset: str,
                        cursors: list[asyncpg.Record], upto: list[datetime]) -> list[StayRow]:
        """New fixes after each cursor, behind a row standing for the open run so far."""
        names = [c["subject"] for c in cursors]
        rows = await conn.fetch(
            "SELECT u.s AS subject, count(o.ts) AS n,"
            " string_agg(float8send(date_part('epoch', o.ts)), ''::bytea ORDER BY o.ts) AS t,"
            " string_agg(float8send(o.lon), ''::bytea ORDER BY o.ts) AS x,"
            " string_agg(float8send(o.lat), ''::bytea ORDER BY o.ts) AS y"
            " FROM unnest($2::text[], $3::timestamptz[], $4::bigint[], $5::timestamptz[])"
            "   AS u(s, after, k, upto)"
            " CROSS JOIN LATERAL (SELECT DISTINCT ON (ts) ts, lon, lat FROM observations"
            "   WHERE subject_key = u.k AND ts > u.after AND ts <= u.upto AND dataset = $1"
            "   AND subject = u.s"
            "   ORDER BY ts, lon, lat) o"
            " GROUP BY u.s ORDER BY u.s", dataset, names, [c["last_ts"] for c in cursors],
            [subject_key(dataset, s) for s in names], upto)
        new = {r["subject"]: r for r in rows}
        groups = [c for c in cursors if c["subject"] in new]
        if not groups:
            return []
        tracks = _unpack([new[c["subject"]] for c in groups])
        fx = tracks.fixes
        # Insert the carried run's start as each group's first row, standing for its fixes.
        at = fx.offsets[:-1]
        start_t = np.array([c["start_ts"].timestamp() for c in groups])

        def ins(a: np.ndarray, v: Any) -> np.ndarray:
            return np.insert(a, at, v)

        offsets = fx.offsets + np.arange(len(groups) + 1)
        w = ins(np.ones(len(fx)), [float(c["fixes"]) for c in groups])
        carried = staypoints.Fixes(
            offsets, ins(fx.t, start_t), ins(fx.lon, [c["start_lon"] for c in groups]),
            ins(fx.lat, [c["start_lat"] for c in groups]), weight=w,
            sum_lon=ins(fx.lon, [c["sum_lon"] for c in groups]),
            sum_lat=ins(fx.lat, [c["sum_lat"] for c in groups]),
            prev_t=np.array([c["last_ts"].timestamp() for c in groups]))
        found, runs = staypoints.detect(carried, self.algo)
        await self._save_runs(conn, dataset, tracks.subjects, runs)
        # The open stay stored last time (arrival = the run's start) is replaced by what the
        # run became: a closed stay, a stay still open, or nothing (a gap ended it).
        await conn.execute(
            "DELETE FROM stay_points p USING unnest($3::text[], $4::timestamptz[]) u(s, f)"
            " WHERE p.dataset = $1 AND p.params = $2 AND p.subject = u.s AND p.arrival >= u.f",
            dataset, self.key, tracks.subjects, [c["start_ts"] for c in groups])
        return stay_rows(tracks.subjects, found)

    async def _recompute(self, conn: asyncpg.Connection, dataset: str,
                         since: dict[str, datetime], upto: list[datetime]) -> list[StayRow]:
        rows = await conn.fetch(
            "SELECT u.s AS subject, count(o.ts) AS n,"
            " string_agg(float8send(date_part('epoch', o.ts)), ''::bytea ORDER BY o.ts) AS t,"
            " string_agg(float8send(o.lon), ''::bytea ORDER BY o.ts) AS x,"
            " string_agg(float8send(o.lat), ''::bytea ORDER BY o.ts) AS y"
            " FROM unnest($2::text[], $3::timestamptz[], $4::bigint[], $5::timestamptz[])"
            "   AS u(s, since, k, upto)"
            " CROSS JOIN LATERAL (SELECT DISTINCT ON (ts) ts, lon, lat FROM observations"
            "   WHERE subject_key = u.k AND ts >= u.since AND ts <= u.upto AND dataset = $1"
            "   AND subject = u.s"
            "   ORDER BY ts, lon, lat) o"
            " GROUP BY u.s ORDER BY u.s", dataset, list(since), list(since.values()),
            [subject_key(dataset, s) for s in since], upto)
        tracks = _unpack(rows)
        found, runs = staypoints.detect(tracks.fixes, self.algo)
        await self._save_runs(conn, dataset, tracks.subjects, runs)
        return stay_rows(tracks.subjects, found)

    async def _save_runs(self, conn: asyncpg.Connection, dataset: str, subjects: list[str],
                         runs: staypoints.Runs) -> None:
        has = runs.start_row >= 0
        idx = np.flatnonzero(has)
        if not len(idx):
            return
        await conn.execute(
            "UPDATE staypoint_cursors c SET start_ts = u.st, start_lon = u.sx, start_lat = u.sy,"
            " last_ts = u.lt, fixes = u.n, sum_lon = u.ax, sum_lat = u.ay"
            " FROM unnest($2::text[], $3::timestamptz[], $4::float8[], $5::float8[],"
            " $6::timestamptz[], $7::int[], $8::float8[], $9::float8[])"
            " AS u(s, st, sx, sy, lt, n, ax, ay)"
            " WHERE c.dataset = $1 AND c.subject = u.s", dataset,
            [subjects[i] for i in idx], [_ts(x) for x in runs.start_t[idx].tolist()],
            runs.start_lon[idx].tolist(), runs.start_lat[idx].tolist(),
            [_ts(x) for x in runs.last_t[idx].tolist()], runs.fixes[idx].tolist(),
            runs.sum_lon[idx].tolist(), runs.sum_lat[idx].tolist())
