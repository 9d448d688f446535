"""Benchmark: from a case's acceptance to its dispatch, with many open cases whose deadline
timers are live and field staff reporting their positions.

    uv run python benchmarks/dispatch.py [--open-cases 10000] [--staff 1000]
                                         [--position-every 10] [--position-batch 1]
                                         [--cases 300] [--rate 5]

Runs identity, the event hub and dispatch as processes against a database and NATS namespace
of its own (removed afterwards). The stores are pre-filled in SQL with `--open-cases` cases
dispatched in the last 30 minutes to district branches (in the hub and in dispatch, with four
timers each: their acceptance deadlines fall due through the next 30 minutes, so escalations
fire during the run, each calling the hub). `--staff` people of one unit go on duty and a
gateway reports each one's position every `--position-every` seconds. Meanwhile `--cases` new
reports arrive at `--rate` per second and the command center accepts each: the latency is the
hub's `dispatched` event time minus its `accepted` event time (consumer → routing rule → HTTP
dispatch through the hub), read from the case events on NATS.
Prints one JSON line: value = p99 acceptance→dispatch in ms; load_1m = the machine's 1-minute
load average when the clock started and at the end.
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
from harness import NATS_URL, create, drop, log, wait_ready

from cityos_contracts.cases import CaseEvent
from cityos_kit.client_auth import ClientCredentials

ROOT = Path(__file__).resolve().parent.parent
IDENTITY_PORT, EVENTS_PORT, DISPATCH_PORT = 18309, 18304, 18305
STAFF_UNIT = "CGJ-329901"
# Categories of district-level handling with their departments (categories.json).
CATEGORIES = [("0101", "HWC", "路边垃圾桶满了溢出来臭气熏天"), ("0201", "CGJ", "人行道上摆满了水果摊"),
              ("0302", "CGJ", "这条路的路灯一到晚上就不亮"), ("0503", "ZJJ", "旁边工地灰尘很大没有洒水"),
              ("1101", "SCJGJ", "小饭馆后厨卫生很差"), ("0501", "ZJJ", "工地半夜还在打桩")]




def bootstrap_lines(path: Path) -> dict[str, dict[str, str]]:
    found = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        key = parts[1] if parts[0] == "service" else parts[0]
        start = 2 if parts[0] == "service" else 1
        found[key] = dict(p.split("=", 1) for p in parts[start:])
    return found


async def admin_token(issuer: str, password: str, scopes: str) -> str:
    async with httpx.AsyncClient(base_url=issuer, timeout=30) as client:
        response = await client.post("/oauth/token", data={
            "grant_type": "password", "username": "admin", "password": password,
            "scope": scopes})
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


async def new_client(issuer: str, password: str, name: str, unit: str,
                     scopes: list[str]) -> ClientCredentials:
    """Register a client (the staff gateway of a unit, the 12345 hotline's system)."""
    token = await admin_token(issuer, password, "identity:admin")
    async with httpx.AsyncClient(base_url=issuer, timeout=30) as client:
        created = (await client.post("/clients", json={
            "name": name, "unit": unit, "scopes": scopes},
            headers={"Authorization": f"Bearer {token}"})).raise_for_status().json()
    return ClientCredentials(issuer, created["client_id"], created["client_secret"])


async def prefill(database_url: str, n: int) -> float:
    """`n` cases dispatched to district branches in the last 30 minutes, in both stores."""
    conn = await asyncpg.connect(database_url)
    started = time.perf_counter()
    rng = random.Random(7)
    rows = []
    for case_id in range(1, n + 1):
        code, dept, text = rng.choice(CATEGORIES)
        district = f"32990{rng.randint(1, 4)}"
        west = 120.70 if district in ("329901", "329904") else 120.90
        south = 32.025 if district in ("329901", "329902") else 31.90
        lon, lat = west + rng.uniform(0.001, 0.199), south + rng.uniform(0.001, 0.124)
        street = f"{district}00{1 + min(2, int((lon - west) / (0.2 / 3)))}"
        ago = rng.uniform(0, 1800)
        rows.append((case_id, code, dept, f"{dept}-{district}", district, street, lon, lat, ago,
                     text))
    await conn.executemany(
        "INSERT INTO events.cases (case_id, status, version, title, category, confidence,"
        " classified_by, needs_operator, department, handling_unit, priority, location,"
        " district, street, geom, first_reported_at, last_reported_at, report_count, channels)"
        " VALUES ($1, 'dispatched', 4, $10, $2, 0.9, 'model', false, $3, $4, 'normal',"
        " jsonb_build_object('schema', 'cityos.location.v1', 'lon', $7::float8, 'lat',"
        " $8::float8, 'district', $5::text, 'street', $6::text, 'source', 'point'), $5, $6,"
        " ST_SetSRID(ST_MakePoint($7, $8), 4326), now() - make_interval(secs => $9 + 60),"
        " now() - make_interval(secs => $9 + 60), 1, ARRAY['hotline_12345'])", rows)
    await conn.execute("SELECT setval(pg_get_serial_sequence('events.cases', 'case_id'), $1)", n)
    await conn.executemany(
        "INSERT INTO dispatch.cases (case_id, version, status, category, title, district, street,"
        " lon, lat, geom, handling_unit) VALUES ($1, 4, 'dispatched', $2, $8, $4, $5, $6, $7,"
        " ST_SetSRID(ST_MakePoint($6, $7), 4326), $3)",
        [(r[0], r[1], r[3], r[4], r[5], r[6], r[7], r[9]) for r in rows])
    await conn.executemany(
        "INSERT INTO dispatch.assignments (case_id, round_seq, lead, priority, state,"
        " dispatched_at, accept_due, dispose_due, rule_id, rule_version)"
        " VALUES ($1, 4, $2, 'normal', 'dispatched', now() - make_interval(secs => $3),"
        " now() - make_interval(secs => $3) + interval '30 minutes',"
        " now() - make_interval(secs => $3) + interval '24 hours', 1, 1)",
        [(r[0], r[3], r[8]) for r in rows])
    await conn.execute(
        "INSERT INTO dispatch.timers (case_id, round_seq, deadline, remind, unit, due_at)"
        " SELECT a.case_id, 4, d.deadline, d.remind, a.lead,"
        "  a.dispatched_at + (CASE d.deadline WHEN 'accept' THEN a.accept_due ELSE a.dispose_due"
        "   END - a.dispatched_at) * CASE WHEN d.remind THEN 0.8 ELSE 1 END"
        " FROM dispatch.assignments a CROSS JOIN (VALUES ('accept', true), ('accept', false),"
        "  ('dispose', true), ('dispose', false)) AS d(deadline, remind)")
    await conn.close()
    return time.perf_counter() - started


async def staff_load(url: str, auth: httpx.Auth, staff: int, every_s: float, batch: int,
                     on_duty: asyncio.Event, stop: asyncio.Event, latencies: list[float]) -> int:
    """Each person on duty (then `on_duty` is set), then a position per person every
    `every_s`, evenly spread: one request each (a phone), or `batch` people's in one request
    (a gateway)."""
    rng = random.Random(11)
    sent = 0
    # Idle connections go before the server's 5-s keep-alive ends (else a reused one can
    # close under a request).
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=30, limits=httpx.Limits(
            max_connections=32, keepalive_expiry=4)) as client:
        people = [f"staff-{i:04d}" for i in range(staff)]
        for chunk in range(0, staff, 50):
            await asyncio.gather(*(client.post(f"/staff/{p}/duty", json={
                "on_duty": True, "lon": 120.8 + rng.uniform(-0.09, 0.09),
                "lat": 32.09 + rng.uniform(-0.05, 0.05)}) for p in people[chunk:chunk + 50]))
        on_duty.set()
        interval = every_s / staff
        pending: set[asyncio.Task[None]] = set()

        def where() -> dict[str, float]:
            return {"lon": 120.8 + rng.uniform(-0.09, 0.09),
                    "lat": 32.09 + rng.uniform(-0.05, 0.05)}

        async def report(first: int) -> None:
            t0 = time.perf_counter()
            if batch == 1:
                response = await client.post(f"/staff/{people[first % staff]}/position",
                                             json=where())
            else:
                response = await client.post("/staff/positions", json={"positions": [
                    {"staff_id": people[(first + i) % staff], **where()}
                    for i in range(batch)]})
            if response.status_code == 202:
                latencies.append(time.perf_counter() - t0)

        next_at = time.perf_counter()
        while not stop.is_set():
            task = asyncio.create_task(report(sent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += batch
            next_at += interval * batch
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*pending)
    return sent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open-cases", type=int, default=10_000)
    parser.add_argument("--staff", type=int, default=1000)
    parser.add_argument("--position-every", type=float, default=10.0)
    parser.add_argument("--position-batch", type=int, default=1,
                        help="positions per request: 1 (each phone reports) or more (a gateway)")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--rate", type=float, default=5.0)
    args = parser.parse_args()

    name, database_url, prefix = await create()
    bootstrap = Path(f"/tmp/{name}-bootstrap.txt")
    issuer = f"http://127.0.0.1:{IDENTITY_PORT}"
    env = {**os.environ, "CITYOS_DATABASE_URL": database_url, "CITYOS_NATS_URL": NATS_URL,
           "CITYOS_NATS_PREFIX": prefix, "CITYOS_LOG_LEVEL": "WARNING",
           "CITYOS_AUTH_ISSUER": issuer, "CITYOS_BOOTSTRAP_FILE": str(bootstrap),
           "CITYOS_AUTH_RATE_LIMIT_PER_MINUTE": "1000000"}
    procs = [subprocess.Popen([sys.executable, "-m", "cityos_identity.main"],
                              env={**env, "CITYOS_HTTP_PORT": str(IDENTITY_PORT)}, cwd=ROOT)]
    nc = await nats.connect(NATS_URL)
    try:
        await wait_ready(issuer)
        creds = bootstrap_lines(bootstrap)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cityos_events.main"],
            env={**env, "CITYOS_HTTP_PORT": str(EVENTS_PORT)}, cwd=ROOT))
        await wait_ready(f"http://127.0.0.1:{EVENTS_PORT}")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cityos_dispatch.main"],
            env={**env, "CITYOS_HTTP_PORT": str(DISPATCH_PORT),
                 "CITYOS_DISPATCH_EVENTS_URL": f"http://127.0.0.1:{EVENTS_PORT}",
                 "CITYOS_CLIENT_ID": creds["dispatch"]["client_id"],
                 "CITYOS_CLIENT_SECRET": creds["dispatch"]["client_secret"]}, cwd=ROOT))
        await wait_ready(f"http://127.0.0.1:{DISPATCH_PORT}")
        prefill_s = await prefill(database_url, args.open_cases)
        log(f"{args.open_cases:,} open cases with {4 * args.open_cases:,} timers pre-filled in "
            f"{prefill_s:.1f} s")

        accepted: dict[int, datetime] = {}
        latencies_ms: dict[int, float] = {}
        decoder = msgspec.json.Decoder(CaseEvent)

        async def on_event(msg: Any) -> None:
            e = decoder.decode(msg.data)
            if e.kind == "accepted":
                accepted[e.case_id] = e.at
            elif e.kind == "dispatched" and e.case_id in accepted:
                latencies_ms[e.case_id] = (e.at - accepted[e.case_id]).total_seconds() * 1000

        await nc.subscribe(f"{prefix}.cases.events.>", cb=on_event)
        password = creds["admin"]["password"]
        operator = await admin_token(issuer, password, "cases:read cases:dispatch")
        hotline = await new_client(issuer, password, "12345 hotline (benchmark)", "CMD",
                                   ["cases:report", "cases:read"])
        gateway = await new_client(issuer, password, "staff gateway (benchmark)", STAFF_UNIT,
                                   ["staff:report"])
        stop, on_duty = asyncio.Event(), asyncio.Event()
        position_latencies: list[float] = []
        staff = asyncio.create_task(staff_load(
            f"http://127.0.0.1:{DISPATCH_PORT}", gateway, args.staff, args.position_every,
            args.position_batch, on_duty, stop, position_latencies))
        await on_duty.wait()  # everyone has gone on duty (a burst of its own)
        await asyncio.sleep(3)  # and the position load is on, before the clock starts
        rng = random.Random(3)
        load_before = os.getloadavg()[0]  # the figure follows the machine's load: say it
        started = time.perf_counter()
        mine: list[int] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{EVENTS_PORT}", timeout=30,
                                     headers={"Authorization": f"Bearer {operator}"},
                                     limits=httpx.Limits(keepalive_expiry=4)) as hub:
            async def one(n: int) -> None:
                code, _, text = rng.choice(CATEGORIES)
                receipt = (await hub.post("/reports", auth=hotline, json={
                    "channel": "hotline_12345", "text": f"{text}（工单{n}）",
                    "reported_at": datetime.now().astimezone().isoformat(),
                    "lon": rng.uniform(120.71, 121.09), "lat": rng.uniform(31.91, 32.14),
                    "category": code, "idempotency_key": f"{prefix}-{n}"})).json()
                if receipt.get("merged") or receipt.get("status") != "classified":
                    return
                response = await hub.post(f"/cases/{receipt['case_id']}/accept", json={})
                if response.status_code == 200:
                    mine.append(receipt["case_id"])

            tasks = []
            for n in range(args.cases):
                tasks.append(asyncio.create_task(one(n)))
                await asyncio.sleep(max(0.0, started + (n + 1) / args.rate - time.perf_counter()))
            await asyncio.gather(*tasks)
        for _ in range(300):  # the last dispatches, up to 30 s
            if all(c in latencies_ms for c in mine):
                break
            await asyncio.sleep(0.1)
        stop.set()
        positions = await staff
        elapsed = time.perf_counter() - started
        got = sorted(latencies_ms[c] for c in mine if c in latencies_ms)
        if not got:
            raise RuntimeError("no case was dispatched")
        conn = await asyncpg.connect(database_url)
        live = await conn.fetchval("SELECT count(*) FROM dispatch.timers WHERE fired_at IS NULL"
                                   " AND cancelled_at IS NULL")
        escalations = await conn.fetchval("SELECT count(*) FROM dispatch.escalations")
        open_cases = await conn.fetchval("SELECT count(*) FROM dispatch.assignments"
                                         " WHERE current AND state IN ('dispatched', 'accepted')")
        await conn.close()

        def pct(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))]

        p50, p99 = statistics.median(got), pct(got, 0.99)
        pos = sorted(position_latencies)
        log(f"  {len(got)}/{len(mine)} accepted cases dispatched: p50 {p50:.1f} ms, "
            f"p99 {p99:.1f} ms, max {got[-1]:.1f} ms")
        log(f"  {positions:,} positions in {elapsed:.0f} s ({positions / elapsed:.0f}/s), "
            f"p99 {1000 * pct(pos, 0.99):.1f} ms; {escalations} escalations fired; "
            f"{open_cases:,} open cases, {live:,} live timers at the end")
        print(json.dumps({"benchmark": "dispatch", "value": round(p99, 1), "unit": "ms",
                          "p50_ms": round(p50, 1), "max_ms": round(got[-1], 1),
                          "cases": len(got), "open_cases": open_cases, "live_timers": live,
                          "escalations_fired": escalations, "staff": args.staff,
                          "positions_per_request": args.position_batch,
                          "positions_per_s": round(positions / elapsed, 1),
                          "position_p99_ms": round(1000 * pct(pos, 0.99), 1),
                          "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}))
    finally:
        for proc in reversed(procs):  # dispatch first: it calls the hub until it stops
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        bootstrap.unlink(missing_ok=True)
        await nc.close()
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
