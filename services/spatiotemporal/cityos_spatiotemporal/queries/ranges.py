"""Query 1, range: observations in an area and a time window, paged; and counts per grid cell
and time bucket.

The area becomes runs of Z2 keys (cover.py), repeated in each 10-minute bin of the window
(Z2T keys, cells.py): each run is one range scan of the z2t B-tree in the partitions of the
window, then the exact test on time and lon/lat. A page is read in time slices
(an hour first, doubling while slices come back sparse), so a long window never sorts more
than a slice at a time.
"""

import base64
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import h3
import msgspec

from cityos_contracts.stquery import (
    CellCountFeature,
    CellCountProps,
    CellCountQuery,
    CellCounts,
    ObservationFeature,
    ObservationFilter,
    ObservationPage,
    ObservationProps,
    RangeQuery,
)
from cityos_spatiotemporal.cells import CELL_BITS, time_bin
from cityos_spatiotemporal.queries import catalog, limits
from cityos_spatiotemporal.queries.cover import cell_centres, cover
from cityos_spatiotemporal.queries.errors import BadQuery
from cityos_spatiotemporal.queries.geo import M_PER_DEG_LAT, Area, m_per_deg_lon, parse_area

FIRST_SLICE = timedelta(hours=1)

# The observations in the covered cells, window and area that pass the filters. $1 dataset,
# $2/$3 key runs, $4/$5 window, $6-$9 bbox, $10 polygon WKB (NULL for a box), $11-$16 filters.
_MATCHES = """
    FROM unnest($2::bigint[], $3::bigint[]) AS r(lo, hi)
    CROSS JOIN LATERAL (
        SELECT * FROM observations x
        WHERE x.z2t BETWEEN r.lo AND r.hi AND x.ts >= $4 AND x.ts < $5 AND x.dataset = $1
        OFFSET 0  -- keeps this a per-run index probe: flattened, the planner scans the window
    ) o
    WHERE o.lon BETWEEN $6 AND $8 AND o.lat BETWEEN $7 AND $9
      AND ($10::bytea IS NULL OR
           ST_Intersects(ST_GeomFromWKB($10::bytea, 4326), ST_SetSRID(ST_MakePoint(o.lon, o.lat), 4326)))
      AND ($11::float8 IS NULL OR o.speed_kmh >= $11) AND ($12::float8 IS NULL OR o.speed_kmh <= $12)
      AND ($13::float8 IS NULL OR o.value >= $13) AND ($14::float8 IS NULL OR o.value <= $14)
      AND ($15::text[] IS NULL OR o.subject = ANY($15))
      AND ($16::jsonb IS NULL OR o.attrs @> $16)
"""

_PAGE_SQL = f"""
    SELECT o.subject, o.ts, o.lon, o.lat, o.speed_kmh, o.heading, o.value, o.attrs
    {_MATCHES}
      AND ($17::timestamptz IS NULL OR (o.ts, o.subject) > ($17, $18::text))
    ORDER BY o.ts, o.subject LIMIT $19
"""


def key_runs(area: Area, start: datetime, end: datetime) -> tuple[list[int], list[int]]:
    """Z2T key ranges: the area's cell runs within each 10-minute bin the window touches."""
    runs = cover(area.west, area.south, area.east, area.north)
    first, last = (int(b) for b in time_bin([start.timestamp(), end.timestamp() - 1e-6]))
    lows, highs = [], []
    for b in range(first, last + 1):
        lows += [b << CELL_BITS | lo for lo, _ in runs]
        highs += [b << CELL_BITS | hi for _, hi in runs]
    return lows, highs


def _args(dataset: str, area: Area, start: datetime, end: datetime,
          f: ObservationFilter) -> list[Any]:
    lows, highs = key_runs(area, start, end)
    return [dataset, lows, highs, start, end,
            area.west, area.south, area.east, area.north, None if area.is_box else area.wkb,
            f.speed_kmh_min, f.speed_kmh_max, f.value_min, f.value_max, f.subjects,
            None if f.attrs is None else msgspec.json.encode(f.attrs).decode()]


def encode_cursor(ts: datetime, subject: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([ts, subject])).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        ts, subject = msgspec.json.decode(base64.urlsafe_b64decode(cursor),
                                          type=tuple[datetime, str])
    except (ValueError, msgspec.DecodeError) as exc:
        raise BadQuery(detail="cursor is not one this service gave out") from exc
    return ts, subject


def _feature(row: asyncpg.Record) -> ObservationFeature:
    attrs = row["attrs"]
    return ObservationFeature(
        geometry={"type": "Point", "coordinates": [row["lon"], row["lat"]]},
        properties=ObservationProps(
            subject=row["subject"], ts=row["ts"], speed_kmh=row["speed_kmh"],
            heading=row["heading"], value=row["value"],
            attrs=msgspec.json.decode(attrs) if isinstance(attrs, str) else attrs))


async def observations(pool: asyncpg.Pool, q: RangeQuery) -> ObservationPage:
    limits.check_window(q.start, q.end)
    area = parse_area(q.bbox, q.polygon, limits.MAX_RANGE_AREA_KM2)
    after: tuple[datetime, str] | None = decode_cursor(q.cursor) if q.cursor else None
    rows: list[asyncpg.Record] = []
    lo = max(q.start, after[0]) if after else q.start
    step = FIRST_SLICE
    async with limits.bounded(pool) as conn:
        await catalog.require_observations(conn, q.dataset)
        while lo < q.end and len(rows) < q.limit:
            hi = min(lo + step, q.end)
            want = q.limit - len(rows)
            got = await conn.fetch(_PAGE_SQL, *_args(q.dataset, area, lo, hi, q.filters),
                                   after[0] if after else None, after[1] if after else None,
                                   want)
            rows += got
            if len(got) < want / 2:
                step *= 2  # sparse: take bigger slices
            lo = hi
    # A full page may be the last one: the next then comes back empty, without a cursor.
    return ObservationPage(
        features=[_feature(r) for r in rows],
        next_cursor=encode_cursor(rows[-1]["ts"], rows[-1]["subject"])
        if len(rows) == q.limit else None)


# -- counts per cell and bucket -----------------------------------------------------------------


async def cell_counts(pool: asyncpg.Pool, q: CellCountQuery) -> CellCounts:
    limits.check_window(q.start, q.end)
    area = parse_area(q.bbox, q.polygon, limits.MAX_RANGE_AREA_KM2)
    args = _args(q.dataset, area, q.start, q.end, q.filters)
    buckets = math.ceil((q.end - q.start).total_seconds() / q.bucket_s)
    bucket = timedelta(seconds=q.bucket_s)
    if q.grid == "square":
        lat0 = (area.south + area.north) / 2
        dx, dy = q.cell_m / m_per_deg_lon(lat0), q.cell_m / M_PER_DEG_LAT
        cells_est = math.ceil((area.east - area.west) / dx + 1) * math.ceil(
            (area.north - area.south) / dy + 1)
        _check_groups(cells_est * buckets)
        # Cells on a grid anchored at (0°, 0°), so a cell has the same id in every query
        # around the same latitude.
        sql = (f"SELECT floor(o.lon / $17)::bigint AS i, floor(o.lat / $18)::bigint AS j,"
               f" date_bin($19, o.ts, $4) AS bucket, count(*) AS n {_MATCHES} GROUP BY 1, 2, 3")
        async with limits.bounded(pool) as conn:
            await catalog.require_observations(conn, q.dataset)
            rows = await conn.fetch(sql, *args, dx, dy, bucket)
        features = [CellCountFeature(
            geometry=_square(r["i"], r["j"], dx, dy),
            properties=CellCountProps(cell=f"sq{q.cell_m:g}:{r['i']}:{r['j']}",
                                      bucket=r["bucket"], count=r["n"])) for r in rows]
    else:
        # Counted per storage cell (34 m x 21 m) in the database, then assigned to the H3 cell
        # holding the storage cell's centre: a fix within ~20 m of a hexagon's edge may count
        # in its neighbour, which a heat map cannot show.
        _check_groups(round(area.area_km2() / h3.average_hexagon_area(q.h3_resolution, "km^2"))
                      * buckets)
        sql = (f"SELECT o.z2t & {(1 << CELL_BITS) - 1} AS cell, date_bin($17, o.ts, $4) AS bucket,"
               f" count(*) AS n {_MATCHES} GROUP BY 1, 2")
        async with limits.bounded(pool) as conn:
            await catalog.require_observations(conn, q.dataset)
            rows = await conn.fetch(sql, *args, bucket)
        lons, lats = cell_centres([r["cell"] for r in rows])
        counts: dict[tuple[str, datetime], int] = defaultdict(int)
        for r, lon, lat in zip(rows, lons.tolist(), lats.tolist(), strict=True):
            counts[(h3.latlng_to_cell(lat, lon, q.h3_resolution), r["bucket"])] += r["n"]
        features = [CellCountFeature(
            geometry=_hexagon(cell), properties=CellCountProps(cell=cell, bucket=b, count=n))
            for (cell, b), n in counts.items()]
    features.sort(key=lambda f: (f.properties.bucket, f.properties.cell))
    return CellCounts(features=features, total=sum(f.properties.count for f in features))


def _check_groups(groups: int) -> None:
    if groups > limits.MAX_CELL_GROUPS:
        raise BadQuery(detail=f"about {groups:,} cells x time buckets, more than the limit of "
                              f"{limits.MAX_CELL_GROUPS:,}: use bigger cells, longer buckets "
                              "or a smaller area")


def _square(i: int, j: int, dx: float, dy: float) -> dict[str, Any]:
    w, s = i * dx, j * dy
    ring = [[w, s], [w + dx, s], [w + dx, s + dy], [w, s + dy], [w, s]]
    return {"type": "Polygon", "coordinates": [ring]}


def _hexagon(cell: str) -> dict[str, Any]:
    ring = [[lon, lat] for lat, lon in h3.cell_to_boundary(cell)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
