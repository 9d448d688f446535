"""Ingestion's SQL: dataset registrations, batch outcomes, dead letters, contribution."""

import hashlib
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.datasets import (
    BatchResult,
    ContributionMetrics,
    DatasetRegistration,
    DatasetVersion,
    DeadLetter,
)
from cityos_kit import db


def _hash(registration: DatasetRegistration) -> str:
    return hashlib.sha256(msgspec.json.encode(registration)).hexdigest()


def _version(row: asyncpg.Record) -> DatasetVersion:
    return DatasetVersion(
        name=row["name"], version=row["version"],
        registration=msgspec.json.decode(row["registration"], type=DatasetRegistration),
        registered_at=row["registered_at"],
    )


class IngestionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def register(self, registration: DatasetRegistration) -> tuple[DatasetVersion, bool]:
        """Store a new version unless the latest one is identical; (version, created)."""
        content_hash = _hash(registration)
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise registrations of one name so two callers cannot take the same number.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", registration.name)
            latest = await conn.fetchrow(
                "SELECT * FROM datasets WHERE name = $1 ORDER BY version DESC LIMIT 1",
                registration.name)
            if latest is not None and latest["content_hash"] == content_hash:
                return _version(latest), False
            if latest is not None and latest["owner"] != registration.owner:
                raise PermissionError(
                    f"dataset `{registration.name}` belongs to {latest['owner']}, "
                    f"not {registration.owner}")
            version = 1 if latest is None else latest["version"] + 1
            with db.span("insert", "datasets"):
                row = await conn.fetchrow(
                    "INSERT INTO datasets (name, version, owner, kind, registration, content_hash)"
                    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                    registration.name, version, registration.owner, registration.kind,
                    msgspec.json.encode(registration).decode(), content_hash)
            return _version(row), True

    async def dataset(self, name: str, version: int | None = None) -> DatasetVersion | None:
        if version is None:
            row = await self.pool.fetchrow(
                "SELECT * FROM datasets WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
        else:
            row = await self.pool.fetchrow(
                "SELECT * FROM datasets WHERE name = $1 AND version = $2", name, version)
        return None if row is None else _version(row)

    async def datasets(self, owner: str | None = None) -> list[DatasetVersion]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (name) * FROM datasets WHERE ($1::text IS NULL OR owner = $1)"
            " ORDER BY name, version DESC", owner)
        return [_version(r) for r in rows]

    async def versions(self, name: str) -> list[DatasetVersion]:
        rows = await self.pool.fetch(
            "SELECT * FROM datasets WHERE name = $1 ORDER BY version", name)
        return [_version(r) for r in rows]

    async def batch(self, batch_id: str) -> BatchResult | None:
        row = await self.pool.fetchrow("SELECT * FROM batches WHERE batch_id = $1", batch_id)
        if row is None:
            return None
        return BatchResult(
            batch_id=row["batch_id"], dataset=row["dataset"], version=row["version"],
            received=row["received"], accepted=row["accepted"], rejected=row["rejected"],
            duplicate=True, reasons=msgspec.json.decode(row["reasons"]))

    async def record_batch(self, result: BatchResult, owner: str, received_at: datetime,
                           letters: list[DeadLetter], tally: ContributionMetrics,
                           optional: tuple[int, int], lag: tuple[float, int]) -> bool:
        """Record a batch's outcome, its dead letters and its contribution in one transaction.

        Returns False if the batch was recorded before (a retried request or redelivery).
        """
        hour = received_at.replace(minute=0, second=0, microsecond=0)
        async with self.pool.acquire() as conn, conn.transaction():
            with db.span("insert", "batches"):
                inserted = await conn.fetchval(
                    "INSERT INTO batches (batch_id, dataset, version, owner, received, accepted,"
                    " rejected, reasons, received_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                    " ON CONFLICT (batch_id) DO NOTHING RETURNING true",
                    result.batch_id, result.dataset, result.version, owner, result.received,
                    result.accepted, result.rejected, msgspec.json.encode(result.reasons).decode(),
                    received_at)
            if not inserted:
                return False
            if letters:
                with db.span("copy", "dead_letters"):
                    await conn.copy_records_to_table(
                        "dead_letters",
                        columns=["dataset", "version", "owner", "batch_id", "row_number",
                                 "reason", "raw", "received_at"],
                        records=[(d.dataset, d.version, owner, d.batch_id, d.row, d.reason,
                                  d.raw, d.received_at) for d in letters])
            await conn.execute(
                "INSERT INTO contribution AS c (owner, dataset, hour, received, accepted, rejected,"
                " optional_present, optional_total, lag_sum_s, lag_count, lag_max_s)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
                " ON CONFLICT (owner, dataset, hour) DO UPDATE SET"
                " received = c.received + EXCLUDED.received,"
                " accepted = c.accepted + EXCLUDED.accepted,"
                " rejected = c.rejected + EXCLUDED.rejected,"
                " optional_present = c.optional_present + EXCLUDED.optional_present,"
                " optional_total = c.optional_total + EXCLUDED.optional_total,"
                " lag_sum_s = c.lag_sum_s + EXCLUDED.lag_sum_s,"
                " lag_count = c.lag_count + EXCLUDED.lag_count,"
                " lag_max_s = GREATEST(c.lag_max_s, EXCLUDED.lag_max_s)",
                owner, tally.dataset, hour, tally.received, tally.accepted, tally.rejected,
                optional[0], optional[1], lag[0], lag[1], tally.freshness_max_s)
        return True

    async def dead_letters(self, dataset: str, after_id: int = 0, limit: int = 100,
                           batch_id: str | None = None) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT id, dataset, version, batch_id, row_number, reason, raw, received_at"
            " FROM dead_letters WHERE dataset = $1 AND id > $2"
            " AND ($3::text IS NULL OR batch_id = $3) ORDER BY id LIMIT $4",
            dataset, after_id, batch_id, limit)
        return [dict(r) for r in rows]

    async def store_dead_letter(self, letter: DeadLetter) -> None:
        """A dead letter that came over NATS (e.g. an undecodable raw batch); idempotent."""
        await self.pool.execute(
            "INSERT INTO dead_letters (dataset, version, batch_id, row_number, reason, raw,"
            " received_at) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
            letter.dataset, letter.version, letter.batch_id, letter.row, letter.reason,
            letter.raw, letter.received_at)

    async def contribution(self, owner: str | None, dataset: str | None, start: datetime,
                           end: datetime) -> list[ContributionMetrics]:
        rows = await self.pool.fetch(
            "SELECT owner, dataset, min(hour) AS first, max(hour) AS last,"
            " sum(received)::bigint AS received, sum(accepted)::bigint AS accepted,"
            " sum(rejected)::bigint AS rejected, sum(optional_present)::bigint AS op,"
            " sum(optional_total)::bigint AS ot, sum(lag_sum_s) AS lag_sum,"
            " sum(lag_count)::bigint AS lag_count, max(lag_max_s) AS lag_max"
            " FROM contribution WHERE ($1::text IS NULL OR owner = $1)"
            " AND ($2::text IS NULL OR dataset = $2) AND hour >= date_trunc('hour', $3::timestamptz)"
            " AND hour < $4 GROUP BY owner, dataset ORDER BY owner, dataset",
            owner, dataset, start, end)
        return [ContributionMetrics(
            department=r["owner"], dataset=r["dataset"], window_start=start, window_end=end,
            received=r["received"], accepted=r["accepted"], rejected=r["rejected"],
            validity_rate=r["accepted"] / r["received"] if r["received"] else 1.0,
            completeness=r["op"] / r["ot"] if r["ot"] else 1.0,
            freshness_mean_s=r["lag_sum"] / r["lag_count"] if r["lag_count"] else None,
            freshness_max_s=r["lag_max"]) for r in rows]
