"""Benchmark: one day's hazchem risk index for the demo city, as the daily run computes it.

    uv run python benchmarks/hazchem_risk.py [--vehicles 400] [--days 7] [--interval 30]

Loads the simulator's fixes (400 hazardous-goods vehicles, a fix every 30 s, over the index's
7-day traffic window: 8.1 M fixes) straight into the spatio-temporal store (binary COPY, as the
stquery benchmark does), 300 enterprises and the demo population layer. Then times
`POST /risk/compute` of the window's last day on the hazchem app, which reads everything
through the spatio-temporal app's HTTP API (both in this process, over Litestar's test client,
so no sockets; the event hub is left out: an empty case search). Baseline in the same run: one
plain SQL count of the same fixes per square cell over the same week, the floor of the traffic
factor's database work. Prints one JSON line.
"""

import argparse
import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from harness import create, drop, log
from litestar.testing import AsyncTestClient
from stquery import DATASET, _chunks, copy_rows

from cityos_contracts.records import Entity, EntityBatch
from cityos_hazchem import population
from cityos_hazchem.app import build_app as build_hazchem
from cityos_hazchem.risk import RiskSettings
from cityos_kit import db
from cityos_kit.auth import AuthPlugin, LocalIssuer
from cityos_kit.city import City
from cityos_kit.config import DEFAULT_CITY_DIR, load_settings
from cityos_simulator.generator import generate_fixes
from cityos_spatiotemporal.app import MIGRATIONS
from cityos_spatiotemporal.app import build_app as build_spatiotemporal
from cityos_spatiotemporal.store import (
    OBSERVATION_COLUMNS,
    SpatioTemporalStore,
    create_partition,
    partitions_between,
)

SCOPES = ("hazchem:read", "stquery:read", "cases:read")


async def load(url: str, args: argparse.Namespace, end: datetime) -> int:
    settings = load_settings("benchmark", database_url=url)
    pool = await db.create_pool(settings, "spatiotemporal", max_size=2)
    await db.migrate(pool, "spatiotemporal", MIGRATIONS)
    start, total = end - timedelta(days=args.days), 0
    async with pool.acquire() as conn:
        for start_ts in sorted(partitions_between(start, end)):
            await create_partition(conn, start_ts)
        for day in range(args.days):
            fx = generate_fixes(args.vehicles, start + timedelta(days=day), timedelta(days=1),
                                interval_s=args.interval, seed=day)
            body = copy_rows(fx.plate, fx.ts, fx.lon, fx.lat, fx.speed_kmh, fx.heading)
            await conn.copy_to_table("observations", source=_chunks(body), format="binary",
                                     columns=OBSERVATION_COLUMNS)
            total += len(fx)
        # The query engine answers for datasets with latest positions (the consumer keeps them).
        last = np.argsort(fx.ts)[-1]
        await conn.execute(
            "INSERT INTO latest_positions (dataset, subject, ts, geom, speed_kmh)"
            " VALUES ($1, $2, to_timestamp($3), ST_SetSRID(ST_MakePoint($4, $5), 4326), 0)",
            DATASET, str(fx.plate[last]), float(fx.ts[last]), float(fx.lon[last]),
            float(fx.lat[last]))
        await conn.execute("VACUUM ANALYZE observations")
    store = SpatioTemporalStore(pool)
    rng = np.random.default_rng(3)
    kinds, statuses = ["producer", "storage", "user", "disposer"], ["operating"] * 8 + [
        "closed", "suspended"]
    valid = datetime(2020, 1, 1, tzinfo=UTC)
    firms = [Entity(entity_id=f"E{i}", name=f"E{i}", category=str(rng.choice(kinds)),
                    geometry={"type": "Point", "coordinates": [float(rng.uniform(120.71, 121.09)),
                                                               float(rng.uniform(31.91, 32.14))]},
                    valid_from=valid, attrs={"status": str(rng.choice(statuses)),
                                             "licence_valid_until": "2026-01-01"})
             for i in range(300)]
    people = [Entity(entity_id=r["cell"], name=r["cell"], category=None, valid_from=valid,
                     geometry={"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                     attrs={"population": r["population"]})
              for r in population.generate(City(DEFAULT_CITY_DIR).divisions)]
    for name, rows in (("bench_firms", firms), ("population", people)):
        await store.write_entities(EntityBatch(batch_id=f"bench-{name}", dataset=name, version=1,
                                               owner="YJJ", entities=rows))
    await pool.close()
    return total


async def baseline_s(url: str, start: datetime, end: datetime) -> float:
    """Fixes per ~500 m square over the week in one plain SQL statement."""
    settings = load_settings("benchmark", database_url=url)
    pool = await db.create_pool(settings, "spatiotemporal", max_size=1)
    t0 = time.perf_counter()
    await pool.fetch("SELECT floor(lon / 0.0053)::bigint, floor(lat / 0.0045)::bigint, count(*)"
                     " FROM observations WHERE dataset = $1 AND ts >= $2 AND ts < $3"
                     " GROUP BY 1, 2", DATASET, start, end)
    took = time.perf_counter() - t0
    await pool.close()
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=400)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--query-hours", type=int, default=RiskSettings().traffic_query_hours)
    args = parser.parse_args()
    name, url, prefix = await create()
    try:
        # The index of `day` covers the 7 days up to its end (local midnight).
        zone = ZoneInfo(RiskSettings().timezone)
        day = datetime.now(zone).date() - timedelta(days=1)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone)
        log(f"loading {args.vehicles} vehicles x {args.days} days, a fix every {args.interval:g} s")
        fixes = await load(url, args, end)
        log(f"  {fixes:,} fixes")
        issuer = LocalIssuer()
        st_settings = load_settings("spatiotemporal", database_url=url, nats_prefix=prefix)
        st_app = build_spatiotemporal(st_settings, auth=AuthPlugin(
            st_settings, verifier=issuer.verifier(), rate_limit_per_minute=1_000_000))
        spent: dict[str, float] = {}  # seconds in the spatio-temporal calls, by kind
        async with AsyncTestClient(st_app, timeout=600) as st:
            async def upstream(method: str, path: str, body: Any, params: dict[str, str] | None,
                               token: str | None) -> Any:
                t = time.perf_counter()
                r = await st.request(method, path, json=body, params=params,
                                     headers={"Authorization": f"Bearer {token}"})
                kind = path.rsplit("/", 1)[-1]
                spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - t
                if r.status_code >= 400:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:300]}")
                return r.json()

            async def no_cases(method: str, path: str, body: Any, params: dict[str, str] | None,
                               token: str | None) -> Any:
                return {"items": [], "next_cursor": None}

            hz_settings = load_settings("hazchem", database_url=url, nats_prefix=prefix)
            risk = RiskSettings(gps_datasets=DATASET, enterprise_datasets="bench_firms",
                                fix_interval_s=args.interval, daily=False,
                                traffic_query_hours=args.query_hours)
            hz_app = build_hazchem(hz_settings, auth=AuthPlugin(hz_settings,
                                                                verifier=issuer.verifier()),
                                   upstream=upstream, risk=risk, hub=no_cases)
            async with AsyncTestClient(hz_app, timeout=600) as hz:
                headers = {"Authorization": f"Bearer {issuer.token(scopes=SCOPES)}"}
                t0 = time.perf_counter()
                r = await hz.post("/risk/compute", json={"day": date.isoformat(day)},
                                  headers=headers)
                took = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                run = r.json()
        base = await baseline_s(url, end - timedelta(days=risk.traffic_days), end)
        log(f"  compute {took:.2f} s ({run['cells']} cells, {run['streets']} streets, "
            f"read {run['read']}); baseline SQL {base:.2f} s; upstream calls "
            f"{ {k: round(v, 2) for k, v in spent.items()} }")
        print(json.dumps({"benchmark": "hazchem_risk_daily", "value": round(took, 2),
                          "unit": "s", "baseline": round(base, 2),
                          "ratio": round(took / base, 2), "fixes": fixes,
                          "cells": run["cells"], "streets": run["streets"],
                          "fixes_read": run["read"]["fixes"],
                          "cell_query_s": round(spent.get("cells", 0.0), 2),
                          "query_hours": args.query_hours}))
    finally:
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
