"""Benchmark: the efficiency review's full rebuild from the streams, next to merely reading the
same messages from NATS.

    uv run python benchmarks/review_rebuild.py [--events 1000000]

Publishes made-up case histories (about ten events a case: the hub's lifecycle events and
dispatch's routing, escalations, feedback and ratings; some cases returned and re-dispatched,
some escalated, some reopened) onto a NATS namespace of its own, then runs the review's
Rebuilder (the code behind POST /review/rebuild) against a database of its own: read both
streams from the start, fold every case, COPY the timeline and the rounds into fresh tables,
index them and swap them in. Removes the database and streams afterwards. Prints one JSON line:
value = events rebuilt per second; baseline = events per second of a bare ordered read of the
same streams (fetch and discard).
"""

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
from harness import NATS_URL, create, drop

from cityos_contracts.cases import CaseEvent
from cityos_contracts.dispatch import DispatchEvent
from cityos_contracts.subjects import CASE_EVENTS, DISPATCH_EVENTS
from cityos_kit import db
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import load_settings
from cityos_review.app import MIGRATIONS, SCHEMA
from cityos_review.rebuild import Rebuilder, read, stream_of
from cityos_review.store import ReviewStore

UNITS = [f"{d}-32990{i}" for d in ("CGJ", "HWC", "JJZD", "ZJJ", "GAJ", "SCJGJ")
         for i in range(1, 5)] + ["SWJ", "JTJ", "STHJJ", "YLJ", "WJW"]
CATEGORIES = ["0101", "0102", "0201", "0204", "0301", "0302", "0401", "0501", "0601", "1201"]


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def history(case_id: int, rng: random.Random, start: datetime
            ) -> tuple[list[CaseEvent], list[DispatchEvent]]:
    """One case's events: lifecycle with the odd return, escalation and reopening."""
    case: list[CaseEvent] = []
    disp: list[DispatchEvent] = []
    t = start

    def step(kind: str, status: str, minutes: float, **fields: Any) -> CaseEvent:
        nonlocal t
        t += timedelta(minutes=minutes)
        e = CaseEvent(event_id=uuid.uuid4().hex, case_id=case_id, seq=len(case) + 1,
                      kind=kind, to_status=status, actor="bench", actor_unit="CMD", at=t,  # type: ignore[arg-type]
                      **fields)
        case.append(e)
        return e

    def note(kind: str, round_seq: int, unit: str, **fields: Any) -> None:
        disp.append(DispatchEvent(event_id=uuid.uuid4().hex, case_id=case_id, kind=kind,  # type: ignore[arg-type]
                                  at=t, actor="system:dispatch", unit=unit,
                                  round_seq=round_seq, **fields))

    step("received", "received", 0)
    step("classified", "classified", 0.1, category=rng.choice(CATEGORIES), confidence=0.9,
         classified_by="model")
    step("accepted", "accepted", rng.uniform(1, 20))
    rounds = 2 if rng.random() < 0.1 else 1
    for r in range(rounds):
        unit = rng.choice(UNITS)
        d = step("dispatched", "dispatched", 0.5, unit=unit)
        note("routed", d.seq, unit, accept_due=t + timedelta(minutes=30),
             dispose_due=t + timedelta(hours=24), lead=unit, rule_id=1, rule_version=1,
             priority="normal")
        if rng.random() < 0.15:
            note("escalated", d.seq, unit, deadline="accept", escalated_to=["CMD"])
        step("started", "handling", rng.expovariate(1 / 25))
        if r < rounds - 1:
            step("returned", "returned", 5, unit="CMD", reason="not ours")
            continue
        step("handled", "handled", rng.expovariate(1 / 600))
        step("verified", "verified", 30)
        step("closed", "closed", 10)
        note("feedback_sent", d.seq, unit, channel="hotline_12345")
        if rng.random() < 0.3:
            note("rated", d.seq, unit, score=rng.randint(1, 5))
        if rng.random() < 0.05:
            step("reopened", "reopened", 60, unit="CMD", reason="not satisfied")
    return case, disp


async def publish_all(nc: Any, prefix: str, events: int, seed: int) -> tuple[int, int, int]:
    """Publish cases until `events` events; returns (cases, case events, dispatch events)."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    cases = n_case = n_disp = 0
    encode = msgspec.json.encode
    while n_case + n_disp < events:
        cases += 1
        case, disp = history(cases, rng, start + timedelta(minutes=cases * 0.3))
        for e in case:
            await nc.publish(f"{prefix}.cases.events.{e.case_id}", encode(e))
        for d in disp:
            await nc.publish(f"{prefix}.dispatch.events.{d.case_id}", encode(d))
        n_case, n_disp = n_case + len(case), n_disp + len(disp)
        if cases % 2000 == 0:
            await nc.flush()
    await nc.flush()
    return cases, n_case, n_disp


async def bare_read(bus: Bus) -> int:
    n = 0
    for subject in (CASE_EVENTS, DISPATCH_EVENTS):
        info = await bus.js.stream_info(bus.stream_name(stream_of(subject)))
        async for batch in read(bus, subject, 1, info.state.last_seq):
            n += len(batch)
    return n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    name, database_url, prefix = await create(extensions=())
    settings = load_settings("review", database_url=database_url, nats_url=NATS_URL,
                             nats_prefix=prefix)
    bus = Bus(settings)
    nc = await nats.connect(NATS_URL)
    pool = await db.create_pool(settings, SCHEMA, max_size=4)
    try:
        await db.migrate(pool, SCHEMA, MIGRATIONS)
        await bus.connect()
        await bus.ensure_streams([stream_of(CASE_EVENTS), stream_of(DISPATCH_EVENTS)])
        t0 = time.perf_counter()
        cases, n_case, n_disp = await publish_all(nc, prefix, args.events, args.seed)
        total = n_case + n_disp
        while True:  # core-NATS publishes: wait until the streams hold them all
            held = sum([(await bus.js.stream_info(bus.stream_name(stream_of(s)))).state.messages
                        for s in (CASE_EVENTS, DISPATCH_EVENTS)])
            if held >= total:
                break
            await asyncio.sleep(0.2)
        log(f"{total:,} events of {cases:,} cases published in {time.perf_counter() - t0:.1f} s"
            f" ({n_case:,} case events, {n_disp:,} dispatch events)")

        t0 = time.perf_counter()
        read_n = await bare_read(bus)
        bare_s = time.perf_counter() - t0
        log(f"  bare read: {read_n:,} in {bare_s:.1f} s = {read_n / bare_s:,.0f} events/s")

        city = City(settings.city_dir)
        store = ReviewStore(pool, {u["id"]: u["department"] for u in city.units})
        rebuilder = Rebuilder(bus, pool, store, asyncio.Lock())
        t0 = time.perf_counter()
        status = await rebuilder.run()
        elapsed = time.perf_counter() - t0
        if status.state != "done":
            raise RuntimeError(f"rebuild failed: {status.error}")
        rounds = await pool.fetchval("SELECT count(*) FROM rounds")
        stored = await pool.fetchval("SELECT count(*) FROM timeline")
        value = status.events / elapsed
        log(f"  rebuild:   {status.events:,} events in {elapsed:.1f} s = {value:,.0f} events/s"
            f" -> {stored:,} timeline rows, {rounds:,} rounds")
        print(json.dumps({"benchmark": "review_rebuild", "value": round(value),
                          "unit": "events/s", "baseline": round(read_n / bare_s),
                          "ratio": round(value / (read_n / bare_s), 3),
                          "events": status.events, "cases": cases, "rounds": rounds,
                          "seconds": round(elapsed, 2)}))
    finally:
        await pool.close()
        await bus.close()
        await nc.close()
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
