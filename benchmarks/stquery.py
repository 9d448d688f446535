"""Benchmark: the spatio-temporal query engine on a store of simulated GPS fixes.

    uv run python benchmarks/stquery.py                 # quick: 1,000 vehicles x 2 days (5.8 M fixes)
    uv run python benchmarks/stquery.py --days 7        # the issue's store: 20.2 M fixes
    uv run --group compare python benchmarks/stquery.py  # with trackintel for the stay points

Loads fixes of the simulator's generator (a fix every 30 s per vehicle, ending now) straight into
the store's partitioned table (binary COPY; ingestion has its own benchmark), and the same rows
into a plain unpartitioned PostGIS table with a GiST index on the point and a B-tree on the time
(the baseline). Then, each over `--queries` random queries, run in this process through the
engine's own query functions:
- range: a 1 km x 1 km box and a 1-hour window (first page of up to 10,000 fixes), next to the
  same query written plainly against the baseline table; results are checked equal;
- knn: the 10 nearest vehicles with a position fixed in the last 10 minutes, next to "latest
  fix per vehicle in the last 10 minutes, then KNN" on the baseline table;
- stay points of the whole fleet over one day: fixes/s of the detection (and with the database
  read), next to trackintel's generate_staypoints on the same fixes when it is installed;
- reachable area: 5 minutes on the demo city's road network from random points, next to
  pgr_drivingDistance over the whole network from the nearest node (no cut to the reachable box,
  no partial roads, no area).
Prints one JSON line with the figures (milliseconds, fixes/s) and the baselines beside them.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from cityos_contracts.records import Entity, EntityBatch
from cityos_contracts.stquery import NearestQuery, RangeQuery, ReachableQuery
from cityos_kit import db
from cityos_kit.config import load_settings
from cityos_simulator.generator import generate_fixes
from cityos_simulator.roads import load_network
from cityos_spatiotemporal.app import MIGRATIONS
from cityos_spatiotemporal.cells import z2t
from cityos_spatiotemporal.queries import isochrone, nearest, ranges, stays
from cityos_spatiotemporal.queries.geo import M_PER_DEG_LAT, m_per_deg_lon
from cityos_spatiotemporal.queries.staypoints import Params, detect
from cityos_spatiotemporal.store import (
    OBSERVATION_COLUMNS,
    SpatioTemporalStore,
    create_partition,
    partitions_between,
    subject_key,
)

ADMIN = os.environ.get("CITYOS_TEST_ADMIN_DATABASE_URL",
                       "postgresql://postgres@127.0.0.1:5432/postgres")
DATASET = "vehicle_gps"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
STAY = Params(distance_m=100, duration_s=300, max_gap_s=900)  # trackintel's defaults


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def pct(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(samples) * 1000, q)), 2)


# -- loading -------------------------------------------------------------------------------------


def copy_rows(plate: np.ndarray, ts: np.ndarray, lon: np.ndarray, lat: np.ndarray,
              speed: np.ndarray, heading: np.ndarray) -> bytes:
    """Rows of the observations table in Postgres' binary COPY format, built by numpy: every
    field has a fixed width here (plates are 8 ASCII characters)."""
    n = len(ts)
    fields = [("dataset", f"S{len(DATASET)}"), ("subject", "S8"), ("subject_key", ">i8"),
              ("ts", ">i8"), ("lon", ">f8"), ("lat", ">f8"), ("z2t", ">i8"),
              ("speed_kmh", ">f4"), ("heading", ">f4")]
    dtype = [("count", ">i2")]
    for name, kind in fields:
        dtype += [(f"{name}_len", ">i4"), (name, kind)]
    dtype += [("value_len", ">i4"), ("attrs_len", ">i4")]
    rows = np.zeros(n, dtype=dtype)
    rows["count"] = len(OBSERVATION_COLUMNS)
    for name, kind in fields:
        rows[f"{name}_len"] = np.dtype(kind).itemsize
    rows["value_len"] = rows["attrs_len"] = -1  # NULL
    rows["dataset"] = DATASET.encode()
    rows["subject"] = plate.astype("S8")
    keys = {p: subject_key(DATASET, p) for p in np.unique(plate).tolist()}
    rows["subject_key"] = np.array([keys[p] for p in plate.tolist()], dtype=np.int64)
    rows["ts"] = np.rint((ts - PG_EPOCH) * 1e6).astype(np.int64)
    rows["lon"], rows["lat"] = lon, lat
    rows["z2t"] = z2t(lon, lat, ts)
    rows["speed_kmh"], rows["heading"] = speed, heading
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") * 2
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


async def load(pool: asyncpg.Pool, args: argparse.Namespace) -> tuple[datetime, datetime, int]:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(days=args.days)
    total = 0
    async with pool.acquire() as conn:
        for start_ts in sorted(partitions_between(start, end)):
            await create_partition(conn, start_ts)
        for day in range(args.days):
            t0 = time.perf_counter()
            fx = generate_fixes(args.vehicles, start + timedelta(days=day), timedelta(days=1),
                                interval_s=args.interval, seed=day)
            body = copy_rows(fx.plate, fx.ts, fx.lon, fx.lat, fx.speed_kmh, fx.heading)
            await conn.copy_to_table("observations", source=_chunks(body), format="binary",
                                     columns=OBSERVATION_COLUMNS)
            total += len(fx)
            log(f"  day {day + 1}: {len(fx):,} fixes in {time.perf_counter() - t0:.0f} s")
            last = fx.take(slice(len(fx) - args.vehicles * 2, len(fx)))
        order = np.argsort(last.ts, kind="stable")
        newest = {p: i for i, p in zip(order.tolist(), last.plate[order].tolist(), strict=True)}
        await conn.execute(
            "INSERT INTO latest_positions (dataset, subject, ts, geom, speed_kmh)"
            " SELECT $1, s, to_timestamp(t), ST_SetSRID(ST_MakePoint(x, y), 4326), v"
            " FROM unnest($2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[])"
            " AS u(s, t, x, y, v) ON CONFLICT DO NOTHING", DATASET, list(newest),
            [float(last.ts[i]) for i in newest.values()],
            [float(last.lon[i]) for i in newest.values()],
            [float(last.lat[i]) for i in newest.values()],
            [float(last.speed_kmh[i]) for i in newest.values()])
        t0 = time.perf_counter()
        await conn.execute(
            "CREATE UNLOGGED TABLE baseline (subject text, ts timestamptz, speed_kmh real,"
            " geom geometry(Point, 4326))")
        await conn.execute(
            "INSERT INTO baseline SELECT subject, ts, speed_kmh,"
            " ST_SetSRID(ST_MakePoint(lon, lat), 4326) FROM observations")
        await conn.execute("CREATE INDEX baseline_geom ON baseline USING gist (geom)")
        await conn.execute("CREATE INDEX baseline_ts ON baseline (ts)")
        log(f"  baseline table and indexes in {time.perf_counter() - t0:.0f} s")
        await conn.execute("VACUUM ANALYZE observations")
        await conn.execute("VACUUM ANALYZE baseline")
    return start, end, total


async def _chunks(body: bytes, size: int = 8 << 20) -> Any:
    for lo in range(0, len(body), size):
        yield body[lo:lo + size]


# -- the queries -----------------------------------------------------------------------------------


async def bench_range(pool: asyncpg.Pool, start: datetime, end: datetime, n: int,
                      rng: np.random.Generator) -> dict[str, Any]:
    bounds = load_network().bounds
    lat0 = (bounds.south + bounds.north) / 2
    dx, dy = 1000 / m_per_deg_lon(lat0), 1000 / M_PER_DEG_LAT
    ours, plain, rows = [], [], 0
    span = (end - start).total_seconds() - 3600
    for i in range(n + 20):
        w = rng.uniform(bounds.west, bounds.east - dx)
        s = rng.uniform(bounds.south, bounds.north - dy)
        t = start + timedelta(seconds=float(rng.uniform(0, span)))
        q = RangeQuery(dataset=DATASET, start=t, end=t + timedelta(hours=1),
                       bbox=[w, s, w + dx, s + dy], limit=10_000)
        t0 = time.perf_counter()
        page = await ranges.observations(pool, q)
        t1 = time.perf_counter()
        base = await pool.fetch(
            "SELECT subject, ts, ST_X(geom) x, ST_Y(geom) y FROM baseline"
            " WHERE ST_Intersects(geom, ST_MakeEnvelope($1, $2, $3, $4, 4326))"
            " AND ts >= $5 AND ts < $6 ORDER BY ts, subject LIMIT 10000",
            w, s, w + dx, s + dy, q.start, q.end)
        t2 = time.perf_counter()
        got = [(f.properties.subject, f.properties.ts) for f in page.features]
        want = [(r["subject"], r["ts"]) for r in base]
        if got != want:
            extra = [tuple(r) for r in base if (r["subject"], r["ts"]) not in set(got)]
            raise AssertionError(f"range results differ: {extra[:3]} {q}")
        if i >= 20:  # the first ones warm the caches
            ours.append(t1 - t0)
            plain.append(t2 - t1)
            rows += len(got)
    return {"range_p50_ms": pct(ours, 50), "range_p99_ms": pct(ours, 99),
            "range_baseline_p50_ms": pct(plain, 50), "range_baseline_p99_ms": pct(plain, 99),
            "range_mean_rows": round(rows / n, 1)}


async def bench_knn(pool: asyncpg.Pool, end: datetime, n: int, rng: np.random.Generator
                    ) -> dict[str, Any]:
    bounds = load_network().bounds
    # The newest fixes are as old as the load took: 10 minutes of fixes from there.
    age = (datetime.now(UTC) - end).total_seconds() + 600
    ours, plain = [], []
    for i in range(n + 20):
        lon = float(rng.uniform(bounds.west, bounds.east))
        lat = float(rng.uniform(bounds.south, bounds.north))
        t0 = time.perf_counter()
        found = await nearest.nearest(pool, NearestQuery(dataset=DATASET, lon=lon, lat=lat,
                                                         k=10, max_age_s=age))
        t1 = time.perf_counter()
        base = await pool.fetch(
            "SELECT subject FROM (SELECT DISTINCT ON (subject) subject, geom FROM baseline"
            "  WHERE ts >= now() - make_interval(secs => $3) ORDER BY subject, ts DESC) l"
            " ORDER BY l.geom::geography <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography"
            " LIMIT 10", lon, lat, age)
        t2 = time.perf_counter()
        assert [f.properties.id for f in found.features] == [r["subject"] for r in base], \
            "knn results differ"
        if i >= 20:
            ours.append(t1 - t0)
            plain.append(t2 - t1)
    return {"knn_p50_ms": pct(ours, 50), "knn_p99_ms": pct(ours, 99),
            "knn_baseline_p50_ms": pct(plain, 50), "knn_baseline_p99_ms": pct(plain, 99)}


async def bench_staypoints(pool: asyncpg.Pool, end: datetime, compare: bool) -> dict[str, Any]:
    day_end = end.replace(hour=0, minute=0, second=0)
    day_start = day_end - timedelta(days=1)
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        tracks = await stays.read_tracks(conn, DATASET, day_start, day_end, None)
    t1 = time.perf_counter()
    found, _ = detect(tracks.fixes, STAY)
    t2 = time.perf_counter()
    n = len(tracks.fixes)
    out: dict[str, Any] = {
        "staypoints_fixes": n, "staypoints_found": len(found),
        "staypoints_fixes_per_s": round(n / (t2 - t1)),
        "staypoints_with_read_fixes_per_s": round(n / (t2 - t0)),
        "staypoints_params": {"distance_m": STAY.distance_m, "duration_s": STAY.duration_s,
                              "max_gap_s": STAY.max_gap_s},
        "trackintel_fixes_per_s": None, "staypoints_ratio_vs_trackintel": None,
        "staypoints_equal_to_trackintel": None}
    log(f"  stay points: {n:,} fixes read in {t1 - t0:.1f} s, detected in {t2 - t1:.2f} s")
    if not compare:
        return out
    try:
        import geopandas as gpd
        import pandas as pd
        import trackintel as ti
    except ImportError:
        log("  trackintel is not installed (uv run --group compare ...): no comparison")
        return out
    f = tracks.fixes
    users = np.repeat(np.array(tracks.subjects), np.diff(f.offsets))
    pfs = ti.Positionfixes(gpd.GeoDataFrame(
        {"user_id": users, "tracked_at": pd.to_datetime(f.t, unit="s", utc=True)},
        geometry=gpd.points_from_xy(f.lon, f.lat), crs="EPSG:4326"))
    t3 = time.perf_counter()
    _, sp = pfs.generate_staypoints(method="sliding", dist_threshold=STAY.distance_m,
                                    time_threshold=STAY.duration_s / 60,
                                    gap_threshold=STAY.max_gap_s / 60)
    t4 = time.perf_counter()
    ti_rate = n / (t4 - t3)
    ours = sorted(zip(np.array(tracks.subjects)[found.group].tolist(),
                      np.round(found.arrival, 3).tolist(), np.round(found.departure, 3).tolist(),
                      strict=True))
    theirs = sorted(zip(sp.user_id.tolist(),
                        np.round(sp.started_at.astype("int64") / 1e9, 3).tolist(),
                        np.round(sp.finished_at.astype("int64") / 1e9, 3).tolist(), strict=True))
    log(f"  trackintel: {t4 - t3:.1f} s; {len(theirs)} stay points, ours {len(ours)}")
    return out | {"trackintel_fixes_per_s": round(ti_rate),
                  "staypoints_ratio_vs_trackintel": round(out["staypoints_fixes_per_s"] / ti_rate,
                                                          1),
                  "staypoints_equal_to_trackintel": ours == theirs}


async def bench_isochrone(pool: asyncpg.Pool, n: int, rng: np.random.Generator
                          ) -> dict[str, Any]:
    net = load_network()
    store = SpatioTemporalStore(pool)
    valid = datetime(2020, 1, 1, tzinfo=UTC)
    await store.write_entities(EntityBatch(
        batch_id="bench-roads", dataset="roads", version=1, owner="JTJ", entities=[
            Entity(entity_id=f["properties"]["road_id"], name=f["properties"]["name"],
                   category=f["properties"]["class"], geometry=f["geometry"], valid_from=valid,
                   attrs={"speed_kmh": f["properties"]["speed_kmh"]})
            for f in net.features]))
    b = net.bounds
    ours, plain = [], []
    for i in range(n + 5):
        lon, lat = float(rng.uniform(b.west, b.east)), float(rng.uniform(b.south, b.north))
        t0 = time.perf_counter()
        await isochrone.reachable(pool, ReachableQuery(network="roads", lon=lon, lat=lat,
                                                       minutes=5, max_snap_m=2000))
        t1 = time.perf_counter()
        await pool.fetch(
            "SELECT node, agg_cost FROM pgr_drivingDistance('SELECT id, source, target, cost,"
            " reverse_cost FROM road_edges WHERE network = ''roads''', (SELECT id FROM road_nodes"
            " WHERE network = 'roads' ORDER BY geom <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)"
            " LIMIT 1), 300.0)", lon, lat)
        t2 = time.perf_counter()
        if i >= 5:  # the first builds the topology
            ours.append(t1 - t0)
            plain.append(t2 - t1)
    return {"isochrone_p50_ms": pct(ours, 50), "isochrone_p99_ms": pct(ours, 99),
            "isochrone_baseline_p50_ms": pct(plain, 50),
            "isochrone_baseline_p99_ms": pct(plain, 99), "road_segments": len(net.features)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-trackintel", action="store_true", help="skip the comparison")
    args = parser.parse_args()

    name = f"cityos_bench_stq_{uuid.uuid4().hex[:8]}"
    log(f"database {name}")
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE EXTENSION postgis")
        await conn.close()
        settings = load_settings("benchmark", database_url=url)
        pool = await db.create_pool(settings, "spatiotemporal", max_size=4)
        await db.migrate(pool, "spatiotemporal", MIGRATIONS)
        log(f"loading {args.vehicles:,} vehicles x {args.days} days, a fix every "
            f"{args.interval:g} s")
        start, end, total = await load(pool, args)
        rng = np.random.default_rng(42)
        result: dict[str, Any] = {"benchmark": "stquery", "fixes": total,
                                  "vehicles": args.vehicles, "days": args.days,
                                  "queries": args.queries}
        log("range queries ...")
        result |= await bench_range(pool, start, end, args.queries, rng)
        log("nearest-k ...")
        result |= await bench_knn(pool, end, args.queries, rng)
        log("stay points ...")
        result |= await bench_staypoints(pool, end, not args.no_trackintel)
        log("reachable areas ...")
        result |= await bench_isochrone(pool, args.queries, rng)
        await pool.close()
        print(json.dumps(result))
    finally:
        if not args.keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
