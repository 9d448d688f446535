"""Benchmark: GPS fixes end to end (HTTP batches -> ingestion -> NATS -> store -> PostGIS),
next to a raw asyncpg COPY of the same rows into the same tables with the same indexes.

    uv run python benchmarks/ingest_gps.py [--fixes 5000000] [--batch 10000] [--concurrency 4]

Runs the real services as processes against a database and NATS namespace of its own, which it
removes afterwards. Prints one JSON line: value = end-to-end fixes/s, baseline = COPY fixes/s.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import msgspec
from harness import NATS_URL, create, drop, log, wait_ready

from cityos_kit import db
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.config import load_settings
from cityos_simulator.datasets import VEHICLE_GPS
from cityos_simulator.fixes import iter_batches, to_ndjson
from cityos_simulator.generator import generate_fixes
from cityos_spatiotemporal.app import MIGRATIONS
from cityos_spatiotemporal.cells import z2t
from cityos_spatiotemporal.store import (
    OBSERVATION_COLUMNS,
    create_partition,
    partitions_between,
    subject_key,
)

ROOT = Path(__file__).resolve().parent.parent




def simulator_credentials(bootstrap: Path, issuer: str) -> ClientCredentials:
    """The simulator's client, as the identity service's first start wrote it."""
    line = next(ln for ln in bootstrap.read_text().splitlines()
                if ln.startswith("service simulator "))
    fields = dict(part.split("=", 1) for part in line.split()[2:])
    return ClientCredentials(issuer, fields["client_id"], fields["client_secret"])


async def end_to_end(bodies: list[bytes], url: str, auth: httpx.Auth, database_url: str,
                     concurrency: int) -> tuple[float, int]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while not queue.empty():
            body = queue.get_nowait()
            response = await client.post("/datasets/vehicle_gps/records", content=body,
                                         headers={"content-type": "application/x-ndjson"})
            response.raise_for_status()
            accepted += response.json()["accepted"]

    conn = await asyncpg.connect(database_url)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, auth=auth) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    sent = time.perf_counter()
    log(f"  all batches accepted by ingestion after {sent - started:.1f} s")
    while True:
        stored = await conn.fetchval(
            "SELECT coalesce(sum(rows), 0) FROM spatiotemporal.stored_batches")
        if stored >= accepted:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    await conn.close()
    return elapsed, accepted


async def raw_copy(database_url: str, fixes: object, batch: int) -> float:
    """The same rows COPYed by asyncpg into an identical schema (`baseline`)."""
    settings = load_settings("benchmark", database_url=database_url)
    pool = await db.create_pool(settings, "baseline")
    await db.migrate(pool, "baseline", MIGRATIONS)
    batches = []
    for part in iter_batches(fixes, batch):  # type: ignore[arg-type]
        ts = [datetime.fromtimestamp(t, UTC) for t in part.ts.tolist()]
        plates = part.plate.tolist()
        keys = [subject_key("vehicle_gps", p) for p in plates]
        cells = z2t(part.lon, part.lat, part.ts).tolist()
        batches.append(list(zip(["vehicle_gps"] * len(ts), plates, keys, ts,
                                part.lon.tolist(), part.lat.tolist(), cells,
                                part.speed_kmh.tolist(), part.heading.tolist(),
                                [None] * len(ts), [None] * len(ts), strict=True)))
    async with pool.acquire() as conn:
        first, last = min(r[3] for b in batches for r in b), max(r[3] for b in batches for r in b)
        for start in sorted(partitions_between(first, last)):
            await create_partition(conn, start, schema="baseline")
        started = time.perf_counter()
        for records in batches:
            await conn.copy_records_to_table("observations", schema_name="baseline",
                                             columns=OBSERVATION_COLUMNS, records=records)
        elapsed = time.perf_counter() - started
    await pool.close()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixes", type=int, default=5_000_000)
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    name, database_url, prefix = await create()
    env = {**os.environ, "CITYOS_DATABASE_URL": database_url, "CITYOS_NATS_URL": NATS_URL,
           "CITYOS_NATS_PREFIX": prefix, "CITYOS_LOG_LEVEL": "WARNING"}
    bootstrap = Path(f"/tmp/{name}-bootstrap.txt")
    env |= {"CITYOS_AUTH_ISSUER": "http://127.0.0.1:18009",
            "CITYOS_BOOTSTRAP_FILE": str(bootstrap)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "cityos_identity.main"],
                         env={**env, "CITYOS_HTTP_PORT": "18009"}, cwd=ROOT),
        subprocess.Popen([sys.executable, "-m", "cityos_ingestion.main"],
                         env={**env, "CITYOS_HTTP_PORT": "18001"}, cwd=ROOT),
        subprocess.Popen([sys.executable, "-m", "cityos_spatiotemporal.main"],
                         env={**env, "CITYOS_HTTP_PORT": "18002"}, cwd=ROOT),
    ]
    try:
        url = "http://127.0.0.1:18001"
        for port in (18009, 18001, 18002):
            await wait_ready(f"http://127.0.0.1:{port}")
        auth = simulator_credentials(bootstrap, "http://127.0.0.1:18009")
        async with httpx.AsyncClient(base_url=url, auth=auth) as client:
            (await client.post("/datasets", content=msgspec.json.encode(VEHICLE_GPS),
                               headers={"content-type": "application/json"})).raise_for_status()
        interval = 10.0
        duration = timedelta(seconds=interval * -(-args.fixes // args.vehicles))
        start = datetime.now(UTC) - duration - timedelta(minutes=1)
        fixes = generate_fixes(args.vehicles, start, duration, interval_s=interval)
        fixes = fixes.take(slice(0, args.fixes))
        bodies = [to_ndjson(part) for part in iter_batches(fixes, args.batch)]
        log(f"{len(fixes):,} fixes of {args.vehicles} vehicles in {len(bodies)} batches")

        e2e_s, accepted = await end_to_end(bodies, url, auth, database_url, args.concurrency)
        value = accepted / e2e_s
        log(f"  end to end: {accepted:,} fixes in {e2e_s:.1f} s = {value:,.0f} fixes/s")
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        copy_s = await raw_copy(database_url, fixes, args.batch)
        baseline = len(fixes) / copy_s
        log(f"  raw COPY:   {len(fixes):,} rows in {copy_s:.1f} s = {baseline:,.0f} rows/s")
        print(json.dumps({"benchmark": "ingest_gps", "value": round(value), "unit": "fixes/s",
                          "baseline": round(baseline), "ratio": round(value / baseline, 3),
                          "fixes": accepted}))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        bootstrap.unlink(missing_ok=True)
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
