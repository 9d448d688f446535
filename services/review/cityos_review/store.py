"""The review's writes: events into the timeline, each touched case's rounds recomputed from
its whole timeline (so any order of delivery, and any redelivery, gives the same rounds),
contribution metrics, and the ranking's weights."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.cases import CaseEvent
from cityos_contracts.datasets import ContributionMetrics
from cityos_contracts.dispatch import DispatchEvent
from cityos_contracts.review import RankingWeights
from cityos_kit import db
from cityos_review.rounds import Round, fold

_case = msgspec.json.Decoder(CaseEvent)
_dispatch = msgspec.json.Decoder(DispatchEvent)

# (case_id, key, source, kind, at, body)
TimelineRow = tuple[int, str, str, str, datetime, str]
ROUND_COLUMNS = ("case_id", "round_seq", "unit", "department", "category", "dispatched_at",
                 "accept_due", "dispose_due", "accepted_at", "handled_at", "returned",
                 "escalations", "closed", "reopened", "ratings", "score_sum")


def case_row(e: CaseEvent, body: bytes) -> TimelineRow:
    return (e.case_id, f"c:{e.seq}", "case", e.kind, e.at, body.decode())


def dispatch_row(d: DispatchEvent, body: bytes) -> TimelineRow:
    return (d.case_id, f"d:{d.event_id}", "dispatch", d.kind, d.at, body.decode())


def round_record(r: Round, department: str) -> tuple[Any, ...]:
    return (r.case_id, r.round_seq, r.unit, department, r.category, r.dispatched_at,
            r.accept_due, r.dispose_due, r.accepted_at, r.handled_at, r.returned,
            r.escalations, r.closed, r.reopened, r.ratings, r.score_sum)


class ReviewStore:
    def __init__(self, pool: asyncpg.Pool, departments: dict[str, str]) -> None:
        self.pool = pool
        self.departments = departments  # unit -> department

    def department(self, unit: str) -> str:
        return self.departments.get(unit) or unit.split("-", 1)[0]

    async def take_in(self, rows: Sequence[TimelineRow]) -> None:
        """Store events and recompute the rounds of the cases they belong to, in one go."""
        if not rows:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            with db.span("insert", "timeline"):
                await conn.execute(
                    "INSERT INTO timeline (case_id, key, source, kind, at, body)"
                    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],"
                    " $5::timestamptz[], $6::text[]) ON CONFLICT DO NOTHING",
                    *(list(column) for column in zip(*rows, strict=True)))
            await self.recompute(conn, {r[0] for r in rows})

    async def recompute(self, conn: asyncpg.Connection, case_ids: Iterable[int]) -> None:
        ids = sorted(case_ids)
        # One writer per case at a time (replicas, a rebuild's tail): locks in id order.
        await conn.execute("SELECT pg_advisory_xact_lock(c) FROM unnest($1::bigint[]) AS c"
                           " ORDER BY c", ids)
        rows = await conn.fetch(
            "SELECT case_id, source, body FROM timeline WHERE case_id = ANY($1::bigint[])",
            ids)
        events: dict[int, tuple[list[CaseEvent], list[DispatchEvent]]] = {i: ([], [])
                                                                            for i in ids}
        for r in rows:
            if r["source"] == "case":
                events[r["case_id"]][0].append(_case.decode(r["body"]))
            else:
                events[r["case_id"]][1].append(_dispatch.decode(r["body"]))
        records = [round_record(x, self.department(x.unit)) for case_id, (c, d) in events.items()
                   for x in fold(case_id, c, sorted(d, key=lambda e: e.at))]
        await conn.execute("DELETE FROM rounds WHERE case_id = ANY($1::bigint[])", ids)
        if records:
            await conn.copy_records_to_table("rounds", records=records, columns=ROUND_COLUMNS)

    async def add_contribution(self, metrics: Sequence[ContributionMetrics]) -> None:
        await self.pool.executemany(
            "INSERT INTO contribution (department, dataset, window_start, window_end, received,"
            " accepted, rejected, completeness, freshness_mean_s, freshness_max_s)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (department, dataset, window_start, window_end) DO UPDATE SET"
            " received = EXCLUDED.received, accepted = EXCLUDED.accepted,"
            " rejected = EXCLUDED.rejected, completeness = EXCLUDED.completeness,"
            " freshness_mean_s = EXCLUDED.freshness_mean_s,"
            " freshness_max_s = EXCLUDED.freshness_max_s",
            [(m.department, m.dataset, m.window_start, m.window_end, m.received, m.accepted,
              m.rejected, m.completeness, m.freshness_mean_s, m.freshness_max_s)
             for m in metrics])

    async def weights(self) -> RankingWeights:
        body = await self.pool.fetchval("SELECT body FROM weights WHERE id = 1")
        return RankingWeights() if body is None else msgspec.json.decode(body,
                                                                         type=RankingWeights)

    async def set_weights(self, weights: RankingWeights, by: str) -> None:
        await self.pool.execute(
            "INSERT INTO weights (id, body, updated_by) VALUES (1, $1::jsonb, $2)"
            " ON CONFLICT (id) DO UPDATE SET body = $1::jsonb, updated_by = $2,"
            " updated_at = now()", msgspec.json.encode(weights).decode(), by)
