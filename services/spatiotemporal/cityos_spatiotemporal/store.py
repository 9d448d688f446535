"""The spatio-temporal service's SQL: write observations, entities, media; load the city."""

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import numpy as np

from cityos_contracts.cases import CaseEvent
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch
from cityos_kit import db
from cityos_kit.bus import Delivery
from cityos_kit.city import City
from cityos_spatiotemporal.cells import z2t

OBSERVATION_COLUMNS = ["dataset", "subject", "subject_key", "ts", "lon", "lat", "z2t",
                       "speed_kmh", "heading", "value", "attrs"]


@functools.lru_cache(maxsize=200_000)
def subject_key(dataset: str, subject: str) -> int:
    """A stable 64-bit key of a subject (vehicle, sensor) for the trajectory index."""
    digest = hashlib.blake2b(f"{dataset}|{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


# Observations are partitioned by UTC time period. Short periods keep the indexes being written
# small enough to stay in memory (GPS arrives roughly in time order), which is what holds the
# write rate up; a query over a day touches a handful of partitions. Retention drops whole ones.
PARTITION_HOURS = 6


def partition_start(ts: datetime) -> datetime:
    utc = ts.astimezone(UTC)
    return utc.replace(hour=utc.hour - utc.hour % PARTITION_HOURS, minute=0, second=0,
                       microsecond=0)


def partitions_between(first: datetime, last: datetime) -> set[datetime]:
    start, end = partition_start(first), partition_start(last)
    step = timedelta(hours=PARTITION_HOURS)
    return {start + k * step for k in range(int((end - start) / step) + 1)}


async def create_partition(conn: asyncpg.Connection, start: datetime,
                           schema: str = "") -> None:
    """The partition holding `start`, created if missing (concurrent callers serialise)."""
    table = f"{schema}.observations" if schema else "observations"
    name = f"{table}_{start:%Y%m%d%H}"
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES"
        f" FROM ('{start.isoformat()}') TO ('{(start + timedelta(hours=PARTITION_HOURS)).isoformat()}')")


class SpatioTemporalStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._partitions: set[datetime] = set()

    async def _ensure_partitions(self, conn: asyncpg.Connection, starts: set[datetime]) -> None:
        for start in sorted(starts - self._partitions):
            await create_partition(conn, start)
            self._partitions.add(start)

    async def write_observations(self, deliveries: list[Delivery[ObservationBatch]]) -> int:
        """Store each batch once, all in one transaction; returns the rows written.

        A batch id already in `stored_batches` is a redelivery and is skipped, so handling the
        same message twice changes nothing.
        """
        try:
            return await self._write(deliveries)
        except Exception:
            self._partitions.clear()  # a partition created in a rolled-back transaction is gone
            raise

    async def _write(self, deliveries: list[Delivery[ObservationBatch]]) -> int:
        written: list[ObservationBatch] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for delivery in deliveries:
                batch = delivery.message
                with delivery.span():
                    first = await conn.fetchval(
                        "INSERT INTO stored_batches (batch_id, dataset, rows) VALUES ($1, $2, $3)"
                        " ON CONFLICT DO NOTHING RETURNING true",
                        batch.batch_id, batch.dataset, len(batch))
                    if first and len(batch):
                        await self._copy(conn, batch)
                        written.append(batch)
            if written:
                await self._update_latest(conn, written)
        return sum(len(b) for b in written)

    async def _copy(self, conn: asyncpg.Connection, batch: ObservationBatch) -> None:
        n = len(batch)
        epochs = np.fromiter((t.timestamp() for t in batch.ts), dtype=np.float64, count=n)
        await self._ensure_partitions(conn, partitions_between(min(batch.ts), max(batch.ts)))
        none = [None] * n
        with db.span("copy", "observations") as span:
            span.set_attribute("db.rows", n)
            await conn.copy_records_to_table(
                "observations", columns=OBSERVATION_COLUMNS,
                records=zip([batch.dataset] * n, batch.subject,
                            [subject_key(batch.dataset, s) for s in batch.subject], batch.ts,
                            batch.lon, batch.lat, z2t(batch.lon, batch.lat, epochs).tolist(),
                            batch.speed_kmh or none,
                            batch.heading or none, batch.value or none,
                            [_json(a) for a in batch.attrs] if batch.attrs else none,
                            strict=True))

    async def _update_latest(self, conn: asyncpg.Connection,
                             batches: list[ObservationBatch]) -> None:
        """One upsert of each subject's newest fix across the batches (not one per fix)."""
        newest: dict[tuple[str, str], tuple[ObservationBatch, int]] = {}
        for batch in batches:
            for i, (subject, ts) in enumerate(zip(batch.subject, batch.ts, strict=True)):
                key = (batch.dataset, subject)
                seen = newest.get(key)
                if seen is None or ts > seen[0].ts[seen[1]]:
                    newest[key] = (batch, i)

        def column(name: str) -> list[Any]:
            return [getattr(b, name)[i] if getattr(b, name) else None
                    for b, i in newest.values()]

        attrs = [_json(b.attrs[i]) if b.attrs else None for b, i in newest.values()]
        with db.span("upsert", "latest_positions"):
            await conn.execute(
                "INSERT INTO latest_positions AS l (dataset, subject, ts, geom, speed_kmh,"
                " heading, value, attrs)"
                " SELECT d, s, t, ST_SetSRID(ST_MakePoint(x, y), 4326), sp, h, v, a::jsonb"
                " FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[],"
                " $5::float8[], $6::real[], $7::real[], $8::float8[], $9::text[])"
                " AS u(d, s, t, x, y, sp, h, v, a)"
                " ON CONFLICT (dataset, subject) DO UPDATE SET ts = EXCLUDED.ts,"
                " geom = EXCLUDED.geom, speed_kmh = EXCLUDED.speed_kmh,"
                " heading = EXCLUDED.heading, value = EXCLUDED.value, attrs = EXCLUDED.attrs"
                " WHERE EXCLUDED.ts > l.ts",
                [d for d, _ in newest], [s for _, s in newest], column("ts"), column("lon"),
                column("lat"), column("speed_kmh"), column("heading"), column("value"), attrs)

    async def write_entities(self, batch: EntityBatch) -> None:
        """Insert new states (idempotent on dataset, id, valid_from), then re-chain history."""
        if not batch.entities:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            with db.span("insert", "entity_states"):
                await conn.execute(
                    "INSERT INTO entity_states (dataset, entity_id, valid_from, name, category,"
                    " geom, attrs, batch_id)"
                    " SELECT $1, e, f, n, c, ST_SetSRID(ST_GeomFromGeoJSON(g), 4326), a::jsonb, $2"
                    " FROM unnest($3::text[], $4::timestamptz[], $5::text[], $6::text[],"
                    " $7::text[], $8::text[]) AS u(e, f, n, c, g, a)"
                    " ON CONFLICT (dataset, entity_id, valid_from) DO NOTHING",
                    batch.dataset, batch.batch_id,
                    [e.entity_id for e in batch.entities], [e.valid_from for e in batch.entities],
                    [e.name for e in batch.entities], [e.category for e in batch.entities],
                    [_json(e.geometry) for e in batch.entities],
                    [_json(e.attrs) for e in batch.entities])
                # An enterprise that closes keeps its past: each state ends where the next begins.
                await conn.execute(
                    "UPDATE entity_states s SET valid_to = n.next_from FROM ("
                    "  SELECT entity_id, valid_from, lead(valid_from) OVER w AS next_from"
                    "  FROM entity_states WHERE dataset = $1 AND entity_id = ANY($2::text[])"
                    "  WINDOW w AS (PARTITION BY entity_id ORDER BY valid_from)) n"
                    " WHERE s.dataset = $1 AND s.entity_id = n.entity_id"
                    " AND s.valid_from = n.valid_from"
                    " AND s.valid_to IS DISTINCT FROM n.next_from",
                    batch.dataset, [e.entity_id for e in batch.entities])

    async def write_media(self, batch: MediaBatch) -> None:
        if not batch.items:
            return
        items = batch.items
        with db.span("insert", "media"):
            await self.pool.execute(
                "INSERT INTO media (media_id, dataset, subject, ts, geom, uri, media_type, attrs)"
                " SELECT m, $1, s, t, CASE WHEN x IS NULL THEN NULL"
                " ELSE ST_SetSRID(ST_MakePoint(x, y), 4326) END, u, mt, a::jsonb"
                " FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::float8[],"
                " $6::float8[], $7::text[], $8::text[], $9::text[]) AS v(m, s, t, x, y, u, mt, a)"
                " ON CONFLICT (media_id) DO NOTHING",
                batch.dataset, [i.media_id for i in items], [i.subject for i in items],
                [i.ts for i in items], [i.lon for i in items], [i.lat for i in items],
                [i.uri for i in items], [i.media_type for i in items],
                [_json(i.attrs) for i in items])

    async def place_cases(self, events: list[CaseEvent]) -> None:
        """Follow cases' status and place; an event older than the last applied is ignored
        (redelivery), and a location once known is kept when later events carry none."""
        rows = [(e.case_id, e.seq, e.to_status, e.category,
                 e.location.lon if e.location else None, e.location.lat if e.location else None,
                 e.at) for e in sorted(events, key=lambda e: (e.case_id, e.seq))]
        with db.span("upsert", "case_places"):
            await self.pool.executemany(
                "INSERT INTO case_places AS c (case_id, seq, status, category, geom, updated_at)"
                " VALUES ($1, $2, $3, $4, CASE WHEN $5::float8 IS NULL THEN NULL"
                " ELSE ST_SetSRID(ST_MakePoint($5, $6), 4326) END, $7)"
                " ON CONFLICT (case_id) DO UPDATE SET seq = EXCLUDED.seq,"
                " status = EXCLUDED.status, category = coalesce(EXCLUDED.category, c.category),"
                " geom = coalesce(EXCLUDED.geom, c.geom), updated_at = EXCLUDED.updated_at"
                " WHERE EXCLUDED.seq > c.seq", rows)

    async def load_city(self, city: City) -> None:
        """Divisions and units of the city's files; re-running it changes nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            for f in city.divisions["features"]:
                p = f["properties"]
                await conn.execute(
                    "INSERT INTO divisions (code, level, name, name_en, parent, geom) VALUES"
                    " ($1, $2, $3, $4, $5, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON($6), 4326)))"
                    " ON CONFLICT (code) DO UPDATE SET level = EXCLUDED.level,"
                    " name = EXCLUDED.name, name_en = EXCLUDED.name_en,"
                    " parent = EXCLUDED.parent, geom = EXCLUDED.geom",
                    p["code"], p["level"], p["name"], p.get("name_en"), p.get("parent"),
                    msgspec.json.encode(f["geometry"]).decode())
            await conn.executemany(
                "INSERT INTO units (id, level, department, name, name_en, parent, division)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET"
                " level = EXCLUDED.level, department = EXCLUDED.department,"
                " name = EXCLUDED.name, name_en = EXCLUDED.name_en, parent = EXCLUDED.parent,"
                " division = EXCLUDED.division",
                [(u["id"], u["level"], u["department"], u["name"], u.get("name_en"),
                  u.get("parent"), u.get("division")) for u in city.units])

    # -- reads of part 1 (the query engine builds on these tables) ------------------------
    async def observation_count(self, dataset: str | None = None) -> int:
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM observations WHERE $1::text IS NULL OR dataset = $1", dataset)
        return count

    async def latest(self, dataset: str, subject: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT subject, ts, ST_X(geom) AS lon, ST_Y(geom) AS lat, speed_kmh, heading, value,"
            " attrs FROM latest_positions WHERE dataset = $1 AND subject = $2", dataset, subject)
        return None if row is None else dict(row)

    async def entities(self, dataset: str, at: datetime | None, category: str | None,
                       limit: int, after: str | None = None) -> list[asyncpg.Record]:
        """Entities as they were at `at` (now when None), ids after `after` (a page's last)."""
        return list(await self.pool.fetch(
            "SELECT entity_id, name, category, valid_from, valid_to, attrs,"
            " ST_AsGeoJSON(geom) AS geometry FROM entity_states WHERE dataset = $1"
            " AND ($2::timestamptz IS NULL AND valid_to IS NULL OR"
            "      valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2))"
            " AND ($3::text IS NULL OR category = $3)"
            " AND ($5::text IS NULL OR entity_id > $5) ORDER BY entity_id LIMIT $4",
            dataset, at, category, limit, after))

    async def entity_history(self, dataset: str, entity_id: str) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT entity_id, name, category, valid_from, valid_to, attrs,"
            " ST_AsGeoJSON(geom) AS geometry FROM entity_states"
            " WHERE dataset = $1 AND entity_id = $2 ORDER BY valid_from", dataset, entity_id))

    async def divisions(self, level: str | None) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(
            "SELECT code, level, name, name_en, parent, ST_AsGeoJSON(geom) AS geometry"
            " FROM divisions WHERE $1::text IS NULL OR level = $1 ORDER BY code", level))

    async def units(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("SELECT * FROM units ORDER BY id"))
