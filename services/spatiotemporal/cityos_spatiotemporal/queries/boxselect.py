"""Query 8, box select ("wartime mode"): everything inside a drawn polygon, grouped by kind.

Kinds: `entity` (current state of every entity dataset, grouped by dataset and category),
`mobile` (latest positions no older than mobile_max_age_s, by dataset), `media` (items of the
last media_since_s, by dataset). Each group answers at most limit_per_group features and always
its full count.

`incident`: open cases, by category, from the read model of the event hub's case events
(`case_places`); selected as the pseudo-dataset `cases` when `datasets` is given.

Extension point: a service that owns another kind of thing registers a `BoxSource` with
`register_source`; the selection then asks it too.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.stquery import BoxFeature, BoxGroup, BoxProps, BoxQuery, BoxSelection
from cityos_spatiotemporal.queries import limits
from cityos_spatiotemporal.queries.geo import Area, parse_area

# (area, query) -> features and groups of one more kind
BoxSource = Callable[[Area, BoxQuery], Awaitable[tuple[list[BoxFeature], list[BoxGroup]]]]
_SOURCES: dict[str, BoxSource] = {}


def register_source(kind: str, source: BoxSource) -> None:
    _SOURCES[kind] = source


_AREA = "ST_GeomFromWKB($1::bytea, 4326)"

# Rows numbered within their group so one statement returns every group's first `limit`.
_ENTITIES = f"""
    SELECT * FROM (
        SELECT dataset, category, entity_id AS id, name, NULL::timestamptz AS ts, attrs,
               ST_AsGeoJSON(geom) AS geometry,
               count(*) OVER w AS n, row_number() OVER (w ORDER BY entity_id) AS rn
        FROM entity_states
        WHERE valid_to IS NULL AND geom && {_AREA} AND ST_Intersects(geom, {_AREA})
          AND ($2::text[] IS NULL OR dataset = ANY($2))
        WINDOW w AS (PARTITION BY dataset, category)) x
    WHERE rn <= $3
"""

_MOBILE = f"""
    SELECT * FROM (
        SELECT dataset, NULL::text AS category, subject AS id, NULL::text AS name, ts, attrs,
               ST_AsGeoJSON(geom) AS geometry,
               count(*) OVER w AS n, row_number() OVER (w ORDER BY subject) AS rn
        FROM latest_positions
        WHERE geom && {_AREA} AND ST_Intersects(geom, {_AREA})
          AND ts >= now() - make_interval(secs => $4)
          AND ($2::text[] IS NULL OR dataset = ANY($2))
        WINDOW w AS (PARTITION BY dataset)) x
    WHERE rn <= $3
"""

_MEDIA = f"""
    SELECT * FROM (
        SELECT dataset, media_type AS category, media_id AS id, subject AS name, ts, attrs,
               ST_AsGeoJSON(geom) AS geometry,
               count(*) OVER w AS n, row_number() OVER (w ORDER BY ts DESC, media_id) AS rn
        FROM media
        WHERE geom && {_AREA} AND ST_Intersects(geom, {_AREA})
          AND ts >= now() - make_interval(secs => $4)
          AND ($2::text[] IS NULL OR dataset = ANY($2))
        WINDOW w AS (PARTITION BY dataset)) x
    WHERE rn <= $3
"""

INCIDENTS_DATASET = "cases"
_INCIDENTS = f"""
    SELECT * FROM (
        SELECT 'cases' AS dataset, category, case_id::text AS id, status AS name,
               updated_at AS ts, NULL::jsonb AS attrs, ST_AsGeoJSON(geom) AS geometry,
               count(*) OVER w AS n, row_number() OVER (w ORDER BY case_id) AS rn
        FROM case_places
        WHERE status NOT IN ('closed', 'rejected', 'merged')
          AND geom && {_AREA} AND ST_Intersects(geom, {_AREA})
          AND ($2::text[] IS NULL OR 'cases' = ANY($2))
        WINDOW w AS (PARTITION BY category)) x
    WHERE rn <= $3
"""


def _attrs(value: Any) -> dict[str, Any] | None:
    decoded: dict[str, Any] | None = msgspec.json.decode(value) if isinstance(value, str) \
        else value
    return decoded


def _collect(kind: str, rows: list[asyncpg.Record], by_category: bool,
             features: list[BoxFeature], groups: dict[str, BoxGroup]) -> None:
    for r in rows:
        group = f"{r['dataset']}/{r['category']}" if by_category else r["dataset"]
        features.append(BoxFeature(
            geometry=msgspec.json.decode(r["geometry"]) if r["geometry"] else None,
            properties=BoxProps(kind=kind, group=group, dataset=r["dataset"], id=r["id"],  # type: ignore[arg-type]
                                name=r["name"], category=r["category"], ts=r["ts"],
                                attrs=_attrs(r["attrs"]))))
        seen = groups.get(f"{kind}:{group}")
        groups[f"{kind}:{group}"] = BoxGroup(kind=kind, group=group, count=r["n"],
                                             returned=(seen.returned if seen else 0) + 1)


async def box_select(pool: asyncpg.Pool, q: BoxQuery) -> BoxSelection:
    area = parse_area(q.bbox, q.polygon, limits.MAX_BOX_AREA_KM2)
    features: list[BoxFeature] = []
    groups: dict[str, BoxGroup] = {}
    async with limits.bounded(pool) as conn:
        _collect("entity", await conn.fetch(_ENTITIES, area.wkb, q.datasets, q.limit_per_group),
                 True, features, groups)
        _collect("mobile", await conn.fetch(_MOBILE, area.wkb, q.datasets, q.limit_per_group,
                                            q.mobile_max_age_s), False, features, groups)
        _collect("media", await conn.fetch(_MEDIA, area.wkb, q.datasets, q.limit_per_group,
                                           q.media_since_s), False, features, groups)
        _collect("incident", await conn.fetch(_INCIDENTS, area.wkb, q.datasets,
                                              q.limit_per_group), True, features, groups)
    group_list = list(groups.values())
    for source in _SOURCES.values():
        more, more_groups = await source(area, q)
        features += more
        group_list += more_groups
    return BoxSelection(features=features, groups=group_list)
