"""Query 2, nearest: the k nearest mobile subjects (by their latest position, if fresh enough)
or static entities (current state) to a point.

KNN runs on a GiST index of `geom::geography`, whose `<->` is true sphere distance: ordering by
degrees would rank a subject 1 km east behind one 900 m north at this latitude.
"""

import asyncpg
import msgspec

from cityos_contracts.stquery import NearestFeature, NearestProps, NearestQuery, NearestResult
from cityos_spatiotemporal.queries import catalog, limits

_PT = "ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography"

_MOBILE = f"""
    SELECT subject AS id, ts, NULL::text AS name, NULL::text AS category, attrs,
           ST_AsGeoJSON(geom) AS geometry, ST_Distance(geom::geography, {_PT}) AS distance_m
    FROM latest_positions
    WHERE dataset = $1 AND ts >= now() - make_interval(secs => $5)
      AND ($6::float8 IS NULL OR ST_DWithin(geom::geography, {_PT}, $6))
      AND ($7::jsonb IS NULL OR attrs @> $7)
    ORDER BY geom::geography <-> {_PT} LIMIT $4
"""

_STATIC = f"""
    SELECT entity_id AS id, NULL::timestamptz AS ts, name, category, attrs,
           ST_AsGeoJSON(geom) AS geometry, ST_Distance(geom::geography, {_PT}) AS distance_m
    FROM entity_states
    WHERE dataset = $1 AND valid_to IS NULL AND geom IS NOT NULL
      AND ($5::text IS NULL OR category = $5)
      AND ($6::float8 IS NULL OR ST_DWithin(geom::geography, {_PT}, $6))
      AND ($7::jsonb IS NULL OR attrs @> $7)
    ORDER BY geom::geography <-> {_PT} LIMIT $4
"""


async def nearest(pool: asyncpg.Pool, q: NearestQuery) -> NearestResult:
    attrs = None if q.attrs is None else msgspec.json.encode(q.attrs).decode()
    async with limits.bounded(pool) as conn:
        if q.kind == "mobile":
            await catalog.require_observations(conn, q.dataset)
            rows = await conn.fetch(_MOBILE, q.dataset, q.lon, q.lat, q.k, q.max_age_s,
                                    q.max_distance_m, attrs)
        else:
            await catalog.require_entities(conn, q.dataset)
            rows = await conn.fetch(_STATIC, q.dataset, q.lon, q.lat, q.k, q.category,
                                    q.max_distance_m, attrs)
    return NearestResult(features=[
        NearestFeature(
            geometry=msgspec.json.decode(r["geometry"]),
            properties=NearestProps(
                dataset=q.dataset, id=r["id"], distance_m=round(r["distance_m"], 2), rank=i + 1,
                ts=r["ts"], name=r["name"], category=r["category"],
                attrs=msgspec.json.decode(r["attrs"]) if isinstance(r["attrs"], str)
                else r["attrs"]))
        for i, r in enumerate(rows)])
