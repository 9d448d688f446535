"""Query 5, stay-point matching: each stay point against registered enterprises within a radius,
as they were at the stay's arrival (status, licence), against POIs of given kinds, or against
nothing — the "no registered enterprise, no POI" stop that suggests a black workshop.

The flags follow the nearest enterprise (the one most likely visited); every enterprise within
the radius is listed with its own status.
"""

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.stquery import (
    EnterpriseMatch,
    MatchQuery,
    PoiMatch,
    StayFlag,
    StayPoints,
)
from cityos_spatiotemporal.queries import catalog, limits, stays

CLOSED = {"closed", "revoked", "deregistered", "cancelled", "关闭", "停产", "注销", "吊销"}
SUSPENDED = {"suspended", "rectifying", "停业", "暂停", "整改", "停产整顿"}
PER_STAY = 10  # candidates listed per stay point and kind

# Entities of `$5` datasets within `$6` metres of each stay point, in the state they were in
# at the stay's arrival; $7: categories to keep (NULL: all).
_NEAR = """
    SELECT u.i, e.dataset, e.entity_id, e.name, e.category, e.attrs,
           ST_Distance(e.geom::geography, u.p) AS distance_m
    FROM (SELECT i, ST_SetSRID(ST_MakePoint(x, y), 4326)::geography AS p, a
          FROM unnest($1::int[], $2::float8[], $3::float8[], $4::timestamptz[]) AS v(i, x, y, a)) u
    CROSS JOIN LATERAL (
        SELECT * FROM entity_states e
        WHERE e.dataset = ANY($5::text[]) AND ST_DWithin(e.geom::geography, u.p, $6)
          AND e.valid_from <= u.a AND (e.valid_to IS NULL OR e.valid_to > u.a)
          AND ($7::text[] IS NULL OR e.category = ANY($7))
        ORDER BY e.geom::geography <-> u.p LIMIT $8
    ) e
    ORDER BY u.i, distance_m
"""


def _licence_valid(value: Any, at: datetime) -> bool | None:
    """A date (valid through that day) or a zoned time; None when there is none to read."""
    if not isinstance(value, str) or not value:
        return None
    try:
        until = datetime.fromisoformat(value)
    except ValueError:
        return None
    return until.date() >= at.date() if until.tzinfo is None else until >= at


async def _near(conn: asyncpg.Connection, rows: list[stays.StayRow], datasets: list[str],
                radius: float, categories: list[str] | None) -> dict[int, list[asyncpg.Record]]:
    found: dict[int, list[asyncpg.Record]] = {}
    if not datasets or not rows:
        return found
    for r in await conn.fetch(_NEAR, list(range(len(rows))), [s.lon for s in rows],
                              [s.lat for s in rows], [s.arrival for s in rows], datasets,
                              radius, categories, PER_STAY):
        found.setdefault(r["i"], []).append(r)
    return found


def _attrs(record: asyncpg.Record) -> dict[str, Any]:
    value = record["attrs"]
    return msgspec.json.decode(value) if isinstance(value, str) else dict(value or {})


async def match(pool: asyncpg.Pool, q: MatchQuery) -> StayPoints:
    timeout = limits.HEAVY_TIMEOUT_MS if q.source == "compute" else limits.QUERY_TIMEOUT_MS
    async with limits.bounded(pool, timeout) as conn:
        for dataset in (*q.enterprise_datasets, *q.poi_datasets):
            await catalog.require_entities(conn, dataset)
        fixes = 0
        if q.source == "stored":
            rows = await stays.stored(conn, q.dataset, q.start, q.end, q.subjects, q.params,
                                      q.limit)
        else:
            rows, fixes = await stays.compute(conn, q.dataset, q.start, q.end, q.subjects,
                                              q.params)
            rows = rows[:q.limit]
        enterprises = await _near(conn, rows, q.enterprise_datasets, q.enterprise_radius_m, None)
        pois = await _near(conn, rows, q.poi_datasets, q.poi_radius_m, q.poi_kinds)
    features = []
    for i, row in enumerate(rows):
        ents = []
        for e in enterprises.get(i, []):
            attrs = _attrs(e)
            status = attrs.get(q.status_field, e["category"])
            ents.append(EnterpriseMatch(
                dataset=e["dataset"], entity_id=e["entity_id"],
                distance_m=round(e["distance_m"], 1), name=e["name"],
                status=None if status is None else str(status),
                licence_valid=_licence_valid(attrs.get(q.licence_field), row.arrival)))
        near_pois = [PoiMatch(dataset=p["dataset"], entity_id=p["entity_id"],
                              distance_m=round(p["distance_m"], 1), name=p["name"],
                              kind=p["category"]) for p in pois.get(i, [])]
        flags: list[StayFlag] = []
        if ents:
            status = (ents[0].status or "").strip().lower()
            if status in CLOSED:
                flags.append("closed_enterprise")
            elif status in SUSPENDED:
                flags.append("suspended_enterprise")
            if ents[0].licence_valid is False:
                flags.append("licence_expired")
        elif not near_pois:
            flags.append("no_enterprise_no_poi")
        features.append(row.feature(
            q.dataset, match="enterprise" if ents else "poi" if near_pois else "nothing",
            enterprises=ents, pois=near_pois, flags=flags))
    return StayPoints(features=features, params=q.params, fixes=fixes)
