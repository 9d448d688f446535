"""The figures: per unit or department over a period, the rounds behind each figure, a case's
timeline, and departments' data contribution. Periods select rounds by dispatch time."""

from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from cityos_contracts.review import (
    CaseTimeline,
    Contribution,
    RoundFacts,
    TimelineEntry,
    UnitFigures,
)

Group = Literal["unit", "department"]

_SECONDS = "extract(epoch FROM {a} - dispatched_at)"
_FIGURES = f"""
    SELECT {{key}} AS key, min(department) AS department,
      count(*) AS received, count(accepted_at) AS accepted,
      count(*) FILTER (WHERE accepted_at <= accept_due) AS accepted_on_time,
      count(handled_at) AS disposed,
      count(*) FILTER (WHERE handled_at <= dispose_due) AS disposed_on_time,
      count(*) FILTER (WHERE returned) AS returns,
      coalesce(sum(escalations), 0) AS escalations,
      count(*) FILTER (WHERE closed) AS closed, count(*) FILTER (WHERE reopened) AS reopened,
      avg({_SECONDS.format(a="accepted_at")}) AS accept_avg,
      percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS.format(a="accepted_at")})
        AS accept_p90,
      avg({_SECONDS.format(a="handled_at")}) AS dispose_avg,
      percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS.format(a="handled_at")})
        AS dispose_p90,
      sum(score_sum)::float8 / nullif(sum(ratings), 0) AS satisfaction,
      coalesce(sum(ratings), 0) AS ratings
    FROM rounds
    WHERE dispatched_at >= $1 AND dispatched_at < $2 AND ($3::text IS NULL OR {{key}} = $3)
      AND ($4::text IS NULL OR department = $4)
    GROUP BY {{key}} ORDER BY {{key}}
"""

# Which rounds a figure counts (the drill-down): SQL conditions on `rounds`.
DRILL: dict[str, str] = {
    "received": "true",
    "accepted": "accepted_at IS NOT NULL",
    "accepted_on_time": "accepted_at <= accept_due",
    "accepted_late": "accepted_at > accept_due",
    "not_accepted": "accepted_at IS NULL",
    "disposed": "handled_at IS NOT NULL",
    "disposed_on_time": "handled_at <= dispose_due",
    "disposed_late": "handled_at > dispose_due",
    "returned": "returned",
    "escalated": "escalations > 0",
    "reopened": "reopened",
    "rated": "ratings > 0",
}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def to_figures(r: Any, start: datetime, end: datetime, unit: str | None) -> UnitFigures:
    return UnitFigures(
        department=r["department"], start=start, end=end, unit=unit, received=r["received"],
        accepted=r["accepted"], accepted_on_time=r["accepted_on_time"],
        disposed=r["disposed"], disposed_on_time=r["disposed_on_time"], returns=r["returns"],
        escalations=int(r["escalations"]), closed=r["closed"], reopened=r["reopened"],
        reopen_rate=_rate(r["reopened"], r["closed"]),
        accept_on_time_rate=_rate(r["accepted_on_time"], r["received"]),
        dispose_on_time_rate=_rate(r["disposed_on_time"], r["received"]),
        accept_time_avg_s=_num(r["accept_avg"]), accept_time_p90_s=_num(r["accept_p90"]),
        dispose_time_avg_s=_num(r["dispose_avg"]), dispose_time_p90_s=_num(r["dispose_p90"]),
        satisfaction_avg=_num(r["satisfaction"]), ratings=int(r["ratings"]))


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


async def figures(pool: asyncpg.Pool, group: Group, start: datetime, end: datetime,
                  name: str | None = None, department: str | None = None) -> list[UnitFigures]:
    rows = await pool.fetch(_FIGURES.format(key=group), start, end, name, department)
    return [to_figures(r, start, end, r["key"] if group == "unit" else None) for r in rows]


async def daily(pool: asyncpg.Pool, department: str, start: datetime, end: datetime,
                tz: str) -> list[tuple[datetime, int, int]]:
    """(day, rounds received, rounds handled) per local day: the report's trend chart."""
    rows = await pool.fetch(
        "SELECT date_trunc('day', dispatched_at AT TIME ZONE $4) AS day, count(*) AS received,"
        " count(handled_at) AS disposed FROM rounds WHERE department = $1"
        " AND dispatched_at >= $2 AND dispatched_at < $3 GROUP BY 1 ORDER BY 1",
        department, start, end, tz)
    return [(r["day"], r["received"], r["disposed"]) for r in rows]


def to_facts(r: Any) -> RoundFacts:
    return RoundFacts(
        case_id=r["case_id"], round_seq=r["round_seq"], unit=r["unit"],
        department=r["department"], dispatched_at=r["dispatched_at"], category=r["category"],
        accept_due=r["accept_due"], dispose_due=r["dispose_due"],
        accepted_at=r["accepted_at"], handled_at=r["handled_at"], returned=r["returned"],
        escalations=r["escalations"], closed=r["closed"], reopened=r["reopened"],
        score=round(r["score_sum"] / r["ratings"]) if r["ratings"] else None)


async def drill(pool: asyncpg.Pool, figure: str, start: datetime, end: datetime,
                unit: str | None, department: str | None, limit: int) -> list[RoundFacts]:
    rows = await pool.fetch(
        f"SELECT * FROM rounds WHERE dispatched_at >= $1 AND dispatched_at < $2"
        f" AND ($3::text IS NULL OR unit = $3) AND ($4::text IS NULL OR department = $4)"
        f" AND {DRILL[figure]} ORDER BY dispatched_at, case_id LIMIT $5",
        start, end, unit, department, limit)
    return [to_facts(r) for r in rows]


async def timeline(pool: asyncpg.Pool, case_id: int) -> CaseTimeline | None:
    rows = await pool.fetch(
        "SELECT source, kind, at, body FROM timeline WHERE case_id = $1 ORDER BY at, key",
        case_id)
    if not rows:
        return None
    rounds = await pool.fetch("SELECT * FROM rounds WHERE case_id = $1 ORDER BY round_seq",
                              case_id)
    return CaseTimeline(
        case_id=case_id, rounds=[to_facts(r) for r in rounds],
        timeline=[TimelineEntry(at=r["at"], source=r["source"], kind=r["kind"],
                                event=msgspec.json.decode(r["body"])) for r in rows])


async def contribution(pool: asyncpg.Pool, start: datetime, end: datetime,
                       department: str | None = None) -> list[Contribution]:
    """Volume, validity, completeness (weighted by accepted records) and freshness (weighted
    by accepted records) per department, over the metric windows starting in the period."""
    rows = await pool.fetch(
        "SELECT department, count(DISTINCT dataset) AS datasets, sum(received) AS received,"
        " sum(accepted) AS accepted,"
        " sum(completeness * accepted) / nullif(sum(accepted), 0) AS completeness,"
        " sum(freshness_mean_s * accepted) FILTER (WHERE freshness_mean_s IS NOT NULL)"
        "  / nullif(sum(accepted) FILTER (WHERE freshness_mean_s IS NOT NULL), 0)"
        "  AS freshness_mean_s, max(freshness_max_s) AS freshness_max_s"
        " FROM contribution WHERE window_start >= $1 AND window_start < $2"
        " AND ($3::text IS NULL OR department = $3) GROUP BY department ORDER BY department",
        start, end, department)
    return [Contribution(
        department=r["department"], start=start, end=end, datasets=r["datasets"],
        received=int(r["received"]), accepted=int(r["accepted"]),
        validity_rate=_rate(int(r["accepted"]), int(r["received"])),
        completeness=_num(r["completeness"]), freshness_mean_s=_num(r["freshness_mean_s"]),
        freshness_max_s=_num(r["freshness_max_s"])) for r in rows]
