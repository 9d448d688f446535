"""Benchmark: report intake of the event hub (classify, locate, duplicate check, store, case
events on NATS) with a store already holding many cases, and how soon a case is searchable.

    uv run python benchmarks/events_intake.py [--cases 1000000] [--reports 5000]
                                              [--concurrency 16] [--replicas 1]

Runs the identity and event-hub services as processes against a database and NATS namespace
of its own, which it removes afterwards. The store is pre-filled in SQL with `--cases` cases
(one report and one event each) spread over the city and the past year; then `--reports` new
reports (made-up incidents from the evaluation generator, many merging) are posted by
`--concurrency` clients of a 12345-hotline client registered in identity, spread over
`--replicas` event-hub processes (as Kubernetes would run them; the cell locks keep replicas
from opening one incident twice). Every fifth POST is
followed by searches for its unique ticket number until the case is found: POST→visible.
Prints one JSON line: value = sustained reports/s; p99 POST→visible-in-search in ms; and the
CPU each part spent per report while posting (this client, the event-hub processes, the
database's backends), as the machine is shared: the CPU a figure cost says more than the
figure alone when other work competes for the cores.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from harness import NATS_URL, create, drop, log, wait_ready

from cityos_events.evaluation import generate
from cityos_events.intake import search_terms
from cityos_kit.city import City
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
IDENTITY_PORT, EVENTS_PORT = 18209, 18204
PREFILL_BATCH = 100_000




async def hotline_client(bootstrap: Path, issuer: str) -> ClientCredentials:
    """Sign in as the bootstrap operator and register the hotline system as a client."""
    line = next(ln for ln in bootstrap.read_text().splitlines() if ln.startswith("admin "))
    password = dict(part.split("=", 1) for part in line.split()[1:])["password"]
    async with httpx.AsyncClient(base_url=issuer, timeout=30) as client:
        token = (await client.post("/oauth/token", data={
            "grant_type": "password", "username": "admin", "password": password,
            "scope": "identity:admin"})).raise_for_status().json()["access_token"]
        created = (await client.post("/clients", json={
            "name": "12345 hotline system (benchmark)", "unit": "CMD",
            "scopes": ["cases:report", "cases:read"]},
            headers={"Authorization": f"Bearer {token}"})).raise_for_status().json()
    return ClientCredentials(issuer, created["client_id"], created["client_secret"])


async def prefill(database_url: str, cases: int) -> float:
    """`cases` cases with a report and an event each, straight into the event hub's tables."""
    rows = generate(seed=4242, incidents=400)
    texts = sorted({r["text"] for r in rows})
    city = City(load_settings("benchmark").city_dir)
    streets = [f for f in city.divisions["features"] if f["properties"]["level"] == "street"]
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "events,public"})
    started = time.perf_counter()
    # Bulk loading goes faster through GIN's pending list; the service writes straight in.
    await conn.execute("ALTER INDEX reports_bigrams SET (fastupdate = on)")
    await conn.execute("CREATE TEMP TABLE texts (i int, text text, bigrams text[])")
    await conn.executemany("INSERT INTO texts VALUES ($1, $2, $3)",
                           [(i, t, search_terms(t)) for i, t in enumerate(texts)])
    await conn.execute("CREATE TEMP TABLE streets (code text, parent text, name text,"
                       " geom geometry)")
    await conn.executemany(
        "INSERT INTO streets VALUES ($1, $2, $3, ST_SetSRID(ST_GeomFromGeoJSON($4), 4326))",
        [(f["properties"]["code"], f["properties"]["parent"], f["properties"]["name"],
          json.dumps(f["geometry"])) for f in streets])
    for first in range(1, cases + 1, PREFILL_BATCH):
        last = min(cases, first + PREFILL_BATCH - 1)
        await conn.execute(
            "WITH p AS ("
            "  SELECT g, 120.701 + random() * 0.398 AS lon, 31.901 + random() * 0.248 AS lat,"
            "   now() - interval '1 day' - random() * interval '365 days' AS at,"
            "   (g % $3) AS t FROM generate_series($1::int, $2::int) g),"
            " q AS (SELECT p.*, s.code AS street, s.parent AS district, s.name AS street_name,"
            "   x.text FROM p JOIN streets s ON ST_Intersects(s.geom,"
            "   ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)) JOIN texts x ON x.i = p.t)"
            " INSERT INTO cases (status, version, title, category, confidence, classified_by,"
            "  needs_operator, department, handling_unit, priority, location, district, street,"
            "  geom, cell, first_reported_at, last_reported_at, report_count, channels,"
            "  created_at, updated_at, closed_at)"
            " SELECT 'closed', 1, text, '0101', 0.9, 'model', false, 'HWC', 'HWC-' || district,"
            "  'normal', jsonb_build_object('schema', 'cityos.location.v1', 'lon', lon,"
            "  'lat', lat, 'district', district, 'street', street, 'street_name', street_name,"
            "  'source', 'point'), district, street, ST_SetSRID(ST_MakePoint(lon, lat), 4326),"
            "  floor((lon + 180) / 0.01)::bigint * 100000 + floor((lat + 90) / 0.01)::bigint,"
            "  at, at, 1, ARRAY['hotline_12345'], at, at, at + interval '1 day' FROM q",
            first, last, len(texts))
        await conn.execute(
            "INSERT INTO reports (case_id, channel, text, reported_at, received_at, location,"
            " classification, payload_hash, bigrams)"
            " SELECT c.case_id, 'hotline_12345', c.title, c.first_reported_at,"
            "  c.first_reported_at, c.location, '{\"schema\": \"cityos.classification.v1\","
            "  \"category\": \"0101\", \"confidence\": 0.9, \"method\": \"model\"}'::jsonb,"
            "  'prefill', x.bigrams FROM cases c JOIN texts x ON x.text = c.title"
            " WHERE c.case_id > (SELECT coalesce(max(case_id), 0) FROM reports)")
        await conn.execute(
            "INSERT INTO case_events (case_id, seq, kind, at, event, published)"
            " SELECT case_id, 1, 'received', first_reported_at, jsonb_build_object("
            "  'schema', 'cityos.case_event.v1', 'event_id', md5(case_id::text),"
            "  'case_id', case_id, 'seq', 1, 'kind', 'received', 'to_status', 'received',"
            "  'actor', 'system:intake', 'actor_unit', 'CMD', 'at', first_reported_at), true"
            " FROM cases WHERE case_id > (SELECT coalesce(max(case_id), 0) FROM case_events)")
        log(f"  pre-filled {last:,} cases ({time.perf_counter() - started:.0f} s)")
    await conn.execute("SELECT gin_clean_pending_list('reports_bigrams'::regclass)")
    await conn.execute("ALTER INDEX reports_bigrams SET (fastupdate = off)")
    await conn.execute("ANALYZE")
    await conn.close()
    return time.perf_counter() - started


def bodies(count: int) -> list[tuple[str, dict[str, object]]]:
    """(ticket, body) of new reports happening now, each with a unique ticket number."""
    rows = generate(seed=random.randrange(1 << 30), incidents=count // 3 + 10)[:count]
    now = datetime.now(UTC)
    out = []
    for row in rows:
        ticket = uuid.uuid4().hex[:12]
        body: dict[str, object] = {k: row[k] for k in ("channel", "lon", "lat", "address")
                                   if k in row}
        body["text"] = f"{row['text']}（工单{ticket}）"
        # Keep the generator's spacing of reports, compressed into the last half hour.
        body["reported_at"] = (now - timedelta(minutes=30) + timedelta(
            minutes=row["at_min"] / (7 * 1440) * 30)).isoformat()
        out.append((ticket, body))
    return out


async def load(urls: list[str], auth: httpx.Auth, work: list[tuple[str, dict[str, object]]],
               concurrency: int) -> tuple[float, list[float], list[float], int]:
    queue: asyncio.Queue[tuple[int, tuple[str, dict[str, object]]]] = asyncio.Queue()
    for item in enumerate(work):
        queue.put_nowait(item)
    posts: list[float] = []
    visible: list[float] = []
    merged = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal merged
        while not queue.empty():
            i, (ticket, body) = queue.get_nowait()
            sent = time.perf_counter()
            response = await client.post("/reports", json=body)
            response.raise_for_status()
            posts.append(time.perf_counter() - sent)
            merged += response.json()["merged"]
            if i % 5 == 0:
                case_id = response.json()["case_id"]
                while True:
                    found = await client.get("/cases", params={"text": ticket})
                    if found.status_code != 200:
                        raise RuntimeError(f"search failed: {found.status_code} {found.text}")
                    if any(c["case_id"] == case_id for c in found.json()["items"]):
                        visible.append(time.perf_counter() - sent)
                        break

    limits = httpx.Limits(max_connections=concurrency)
    clients = [httpx.AsyncClient(base_url=url, timeout=60, auth=auth, limits=limits)
               for url in urls]
    try:
        await auth.token()  # type: ignore[attr-defined]  # before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(clients[i % len(clients)])
                               for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return elapsed, posts, visible, merged


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux's /proc; gone processes count 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def backends(database_url: str) -> list[int]:
    conn = await asyncpg.connect(database_url)
    try:
        return [r["pid"] for r in await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()")]
    finally:
        await conn.close()


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 \
        if len(values) > 1 else values[0] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--reports", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()

    name, database_url, prefix = await create()
    issuer = f"http://127.0.0.1:{IDENTITY_PORT}"
    bootstrap = Path(f"/tmp/{name}-bootstrap.txt")
    env = {**os.environ, "CITYOS_DATABASE_URL": database_url, "CITYOS_NATS_URL": NATS_URL,
           "CITYOS_NATS_PREFIX": prefix, "CITYOS_LOG_LEVEL": "WARNING",
           "CITYOS_AUTH_ISSUER": issuer, "CITYOS_BOOTSTRAP_FILE": str(bootstrap),
           # One client posts everything here; a city's hotline would have its own limit.
           "CITYOS_AUTH_RATE_LIMIT_PER_MINUTE": "100000000"}
    ports = [EVENTS_PORT + i for i in range(args.replicas)]
    procs = [subprocess.Popen([sys.executable, "-m", "cityos_identity.main"],
                              env={**env, "CITYOS_HTTP_PORT": str(IDENTITY_PORT)}, cwd=ROOT)]
    try:
        await wait_ready(f"http://127.0.0.1:{IDENTITY_PORT}")
        for port in ports:  # one after the other: the first applies the migrations
            procs.append(subprocess.Popen([sys.executable, "-m", "cityos_events.main"],
                                          env={**env, "CITYOS_HTTP_PORT": str(port)}, cwd=ROOT))
            await wait_ready(f"http://127.0.0.1:{port}")
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        auth = await hotline_client(bootstrap, issuer)
        log(f"pre-filling {args.cases:,} cases")
        fill_s = await prefill(database_url, args.cases)
        work = bodies(args.reports)
        log(f"posting {len(work):,} reports with {args.concurrency} clients")
        services = [proc.pid for proc in procs[1:]]
        before = {"client": time.process_time(), "service": cpu_seconds(services),
                  "postgres": cpu_seconds(await backends(database_url))}
        elapsed, posts, visible, merged = await load(urls, auth, work, args.concurrency)
        spent = {"client": time.process_time() - before["client"],
                 "service": cpu_seconds(services) - before["service"],
                 "postgres": cpu_seconds(await backends(database_url)) - before["postgres"]}
        per_report = {k: round(v / len(posts) * 1000, 2) for k, v in spent.items()}
        client_share = spent["client"] / (elapsed * (os.cpu_count() or 1))
        rate = len(posts) / elapsed
        log(f"  {len(posts):,} reports in {elapsed:.1f} s = {rate:,.0f} reports/s "
            f"({merged:,} merged into existing cases); POST p50 {p(posts, 50):.1f} ms "
            f"p99 {p(posts, 99):.1f} ms; POST→visible p50 {p(visible, 50):.1f} ms "
            f"p99 {p(visible, 99):.1f} ms; CPU ms per report {per_report}, the client's "
            f"share of the machine's CPU {client_share:.0%}")
        print(json.dumps({"benchmark": "events_intake", "value": round(rate), "unit": "reports/s",
                          "p99_visible_ms": round(p(visible, 99), 1),
                          "p50_visible_ms": round(p(visible, 50), 1),
                          "p99_post_ms": round(p(posts, 99), 1), "reports": len(posts),
                          "merged": merged, "cases_prefilled": args.cases,
                          "prefill_s": round(fill_s), "concurrency": args.concurrency,
                          "replicas": args.replicas, "cpu_ms_per_report": per_report,
                          "client_cpu_share": round(client_share, 3)}))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        bootstrap.unlink(missing_ok=True)
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
