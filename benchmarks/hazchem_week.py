"""Benchmark: a week of hazardous-goods vehicles from file to all warnings, then live lag.

    uv run python benchmarks/hazchem_week.py [--copies 16] [--days 7] [--fixes 3000000]
                                              [--batch 5000] [--live-seconds 120]
                                              [--live-speed 900]

The week: the scenario generator's planted cases and look-alikes (`--copies` of each: 16 gives
~400 vehicles) on every day (multi-day cases once, from day 0) with their declared trips (route
deviations, 300 m detours and short excursions), noise included (duplicates, outliers, 3% of
fixes arriving 2-10 min late, silent parked terminals), and parked terminals reporting between
their trips so the week holds about `--fixes` fixes. Written as CSV in arrival order, as a GPS
gateway logs them. Route deviations are warned without the interception queries (no
spatio-temporal service runs here; `tests/hazchem/test_live.py` checks them).

Timed path: the CSV is read and cut into `--batch`-fix normalised observation batches, published
on `obs.<dataset>` (what ingestion publishes after validating; benchmarks/ingest_gps.py times
that step), taken by hazchem's live consumer (`cityos_hazchem.live`, the service's own code, in
its own process) which posts every warning to `reports.system`; the clock stops when the
consumer has acknowledged the last batch. Baseline in the same run: the pure rules over the same
week's arrays in memory (the floor: no file, no NATS, no database). The warnings of both are
compared by idempotency key, vehicle and place warnings alike (a place warning is one per place
and week: live sees each in many windows and posts it once).

Live lag: the day after the week, streamed at its real rate (one batch a second for
`--live-seconds` from 02:29:30 local: the planted night drives start at 02:30), then the rest of
that day at `--live-speed` x real time; lag = from the batch's arrival on the stream to the post
of the warning it raised (from the earliest batch of the consumer's round with that vehicle: an
upper bound).

Prints one JSON line: value = week seconds (file -> all warnings), baseline = in-memory rules
seconds, with fixes/s and the live lag p50/p99.
"""

import argparse
import asyncio
import csv
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec
import nats
import numpy as np
from harness import NATS_URL, create, drop, log
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cityos_contracts.records import ObservationBatch
from cityos_contracts.subjects import STREAMS
from cityos_hazchem import rules, scenario, stays
from cityos_hazchem.app import MIGRATIONS, SCHEMA
from cityos_hazchem.live import (
    FIXES,
    OBS_STREAM,
    TOO_LATE,
    LiveSettings,
    LiveWarnings,
    Registered,
)
from cityos_hazchem.reports import idempotency_key
from cityos_hazchem.rules import Places, Thresholds, Track, Trip
from cityos_kit import db
from cityos_kit.bus import Bus
from cityos_kit.config import load_settings

DATASET = "hz_week"
DAY = 86400.0
CORE = (rules.CLOSED_STAY, rules.NOTHING_STAY, rules.FATIGUE, rules.NIGHT, rules.NON_OPERATING,
        rules.ROUTE_DEVIATION)


# -- the week ----------------------------------------------------------------------------------
def _sorted(tr: Track, shift: float = 0.0) -> Track:
    order = np.argsort(tr.t, kind="stable")
    return Track(tr.vehicle, tr.t[order] + shift, tr.lon[order], tr.lat[order])


def generate(copies: int, days: int, fixes: int, seed: int) -> tuple[
        dict[str, Track], dict[str, bool], Places, Places, list[Trip]]:
    """Per vehicle, `days` days of fixes (time order, noise kept); licences; places; the
    declared trips of every day."""
    base = scenario.generate(copies=copies, seed=seed)
    multi = {tr.vehicle for tr in base.tracks if np.ptp(tr.t) > 20 * 3600}
    segments: dict[str, list[Track]] = {tr.vehicle: [_sorted(tr)] for tr in base.tracks}
    trips = list(base.trips)
    for d in range(1, days):
        day = scenario.generate(copies=copies, seed=seed + d)
        for tr in day.tracks:
            if tr.vehicle not in multi:
                segments[tr.vehicle].append(_sorted(tr, d * DAY))
        trips += [replace(t, trip_id=f"{t.trip_id}-{d}", start=t.start + d * DAY,
                          end=t.end + d * DAY) for t in day.trips if t.vehicle not in multi]
    end = scenario.DAY.timestamp() + days * DAY
    # Parked between trips at the next trip's start (home, ~10 min after the last fix), the
    # terminal reporting every `every` s: enough of them to make the week hold `fixes` fixes.
    gaps = []
    for v, segs in segments.items():
        for a, b in zip(segs, [*segs[1:], None], strict=True):
            t0 = float(a.t[-1]) + 600
            t1 = float(b.t[0]) - 60 if b is not None else end
            if t1 - t0 > 300:
                home = b if b is not None else segs[-1]
                gaps.append((v, t0, t1, float(home.lon[0]), float(home.lat[0])))
    active = sum(len(s.t) for segs in segments.values() for s in segs)
    parked_s = sum(g[2] - g[1] for g in gaps)
    every = float(np.clip(parked_s / max(fixes - active, 1), 10.0, 600.0))
    rng = np.random.default_rng(seed)
    filler: dict[str, list[Track]] = {v: [] for v in segments}
    for v, t0, t1, lon, lat in gaps:
        t = np.arange(t0, t1, every)
        j = rng.normal(0, 4e-5, (2, len(t)))  # ~5 m
        filler[v].append(Track(v, t, lon + j[0], lat + j[1]))
    tracks = {v: _sorted(Track(v, *(np.concatenate([getattr(s, f) for s in segs + filler[v]])
                                    for f in ("t", "lon", "lat"))))
              for v, segs in segments.items()}
    return tracks, base.licensed, base.enterprises, base.pois, trips


def arrival_order(tracks: dict[str, Track], seed: int) -> tuple[np.ndarray, ...]:
    """All fixes in the order they arrive: 3% of them 2-10 minutes late."""
    rng = np.random.default_rng(seed)
    subj = np.concatenate([np.full(len(tr.t), v) for v, tr in tracks.items()])
    t = np.concatenate([tr.t for tr in tracks.values()])
    lon = np.concatenate([tr.lon for tr in tracks.values()])
    lat = np.concatenate([tr.lat for tr in tracks.values()])
    arrive = t.copy()
    late = rng.random(len(t)) < 0.03
    arrive[late] += rng.uniform(120, 600, int(late.sum()))
    order = np.argsort(arrive, kind="stable")
    return subj[order], t[order], lon[order], lat[order], arrive[order]


def write_csv(path: Path, subj: np.ndarray, t: np.ndarray, lon: np.ndarray,
              lat: np.ndarray) -> None:
    ts = np.datetime_as_string((t * 1e6).astype("datetime64[us]"), unit="us")
    with path.open("w", newline="") as f:
        f.write("subject,ts,lon,lat\n")
        for i in range(0, len(t), 100_000):
            f.write("".join(f"{s},{x}Z,{a:.6f},{b:.6f}\n" for s, x, a, b in zip(
                subj[i:i + 100_000].tolist(), ts[i:i + 100_000].tolist(),
                lon[i:i + 100_000].tolist(), lat[i:i + 100_000].tolist(), strict=True)))


def batch_of(n: int, rows: list[list[str]]) -> ObservationBatch:
    """A normalised batch from CSV rows (times parsed by msgspec, as a decoder would)."""
    subject, ts, lon, lat = zip(*rows, strict=True)
    return msgspec.convert({
        "schema": "cityos.observation_batch.v1", "batch_id": f"{DATASET}-{n}",
        "dataset": DATASET, "version": 1, "owner": "JTJ", "subject": list(subject),
        "ts": list(ts), "lon": np.array(lon, dtype=float).tolist(),
        "lat": np.array(lat, dtype=float).tolist()}, ObservationBatch)


# -- hazchem's live consumer, in a process of its own --------------------------------------------
def consumer(conn: Connection, database_url: str, prefix: str, licensed: dict[str, bool],
             places: tuple[Places, Places], trips: list[Trip], batch: int) -> None:
    async def run() -> None:
        settings = load_settings("hazchem", database_url=database_url, nats_url=NATS_URL,
                                 nats_prefix=prefix)
        pool = await db.create_pool(settings, SCHEMA, max_size=4)
        await db.migrate(pool, SCHEMA, MIGRATIONS)
        bus = Bus(settings)
        await bus.connect()

        async def registry() -> Registered:
            return Registered(*places, licensed, rules.trips_by_vehicle(trips))

        lw = LiveWarnings(DATASET, pool, bus, LiveSettings(gps_datasets=DATASET, batch=batch),
                          Thresholds(), registry)
        await lw.start()
        conn.send("ready")
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, conn.poll, 0.5):
            pass
        conn.recv()
        conn.send({"posted": lw.posted, "lags": lw.lags, "vehicles": len(lw.windows),
                   "fixes": FIXES._value.get(), "late": TOO_LATE._value.get()})
        await bus.close()
        await pool.close()

    asyncio.run(run())


# -- measurements ------------------------------------------------------------------------------
async def caught_up(bus: Bus, after: float = 0.0) -> float:
    """Wait until the consumer acknowledged everything published; returns the time."""
    await asyncio.sleep(after)
    stream = bus.stream_name(OBS_STREAM)
    last = (await bus.js.stream_info(stream)).state.last_seq
    while True:
        try:
            info = await bus.js.consumer_info(stream, f"hazchem-live-{DATASET}")
            if (info.ack_floor.stream_seq or 0) >= last:
                return time.perf_counter()
        except nats.js.errors.NotFoundError:
            pass
        await asyncio.sleep(0.05)


async def posted_keys(bus: Bus) -> list[str]:
    sub = await bus.js.pull_subscribe(bus.subject("reports.system"), durable=None,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL,
                                                            ack_policy=AckPolicy.NONE))
    keys: list[str] = []
    try:
        while True:
            keys += [msgspec.json.decode(m.data)["idempotency_key"]
                     for m in await sub.fetch(1000, timeout=1)]
    except (nats.errors.TimeoutError, TimeoutError):
        pass
    finally:
        await sub.unsubscribe()
    return keys


def baseline(tracks: dict[str, Track], licensed: dict[str, bool], ents: Places,
             pois: Places, trips: list[Trip]) -> tuple[float, list[rules.Warning]]:
    th = Thresholds()
    t0 = time.perf_counter()
    cleaned = [rules.clean(tr, th) for tr in tracks.values()]
    found = stays.concat([stays.detect(tr, stays.StayParams(include_last=False))
                          for tr in cleaned])
    warnings = rules.detect_all(cleaned, licensed, found, ents, pois, th, trips=trips)
    return time.perf_counter() - t0, warnings


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--fixes", type=int, default=3_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--live-seconds", type=float, default=120.0)
    parser.add_argument("--live-speed", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--file", type=Path, default=Path("/tmp/hazchem_week.csv"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    # The week and the day streamed live after it, at the week's density.
    tracks, licensed, ents, pois, trips = generate(args.copies, args.days + 1,
                                            args.fixes * (args.days + 1) // args.days, args.seed)
    subj, t, lon, lat, arrive = arrival_order(tracks, args.seed)
    week_end = scenario.DAY.timestamp() + args.days * DAY
    n_week = int(np.searchsorted(arrive, week_end))
    write_csv(args.file, subj[:n_week], t[:n_week], lon[:n_week], lat[:n_week])
    log(f"{len(tracks)} vehicles, {n_week:,} fixes in the week -> {args.file} "
        f"({args.file.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    week_tracks = {v: Track(v, tr.t[tr.t < week_end], tr.lon[tr.t < week_end],
                            tr.lat[tr.t < week_end]) for v, tr in tracks.items()}

    name, database_url, prefix = await create()
    settings = load_settings("hazchem-bench", database_url=database_url, nats_url=NATS_URL,
                             nats_prefix=prefix)
    bus = Bus(settings)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=consumer, args=(child, database_url, prefix, licensed,
                                              (ents, pois), trips, 64))
    try:
        await bus.connect()
        await bus.ensure_streams(STREAMS)
        proc.start()
        await asyncio.get_running_loop().run_in_executor(None, parent.recv)

        # The week: file -> batches -> obs.<dataset> -> live consumer -> reports.system.
        t0 = time.perf_counter()
        n = sent = 0
        with args.file.open(newline="") as f:
            reader = csv.reader(f)
            next(reader)
            rows: list[list[str]] = []
            for row in reader:
                rows.append(row)
                if len(rows) == args.batch:
                    await bus.publish(f"obs.{DATASET}", batch_of(n, rows), msg_id=f"w{n}")
                    n, sent, rows = n + 1, sent + len(rows), []
            if rows:
                await bus.publish(f"obs.{DATASET}", batch_of(n, rows), msg_id=f"w{n}")
                n, sent = n + 1, sent + len(rows)
        published = time.perf_counter() - t0
        done = await caught_up(bus, after=1.0)
        week_s = done - t0
        week_keys = await posted_keys(bus)
        log(f"week: {sent:,} fixes in {n} batches published in {published:.1f} s; all warnings "
            f"posted after {week_s:.1f} s = {sent / week_s:,.0f} fixes/s; "
            f"{len(week_keys)} warnings")

        base_s, base = baseline(week_tracks, licensed, ents, pois, trips)
        log(f"baseline (rules over the week in memory): {base_s:.1f} s = "
            f"{sent / base_s:,.0f} fixes/s; {len(base)} warnings")
        live_k = Counter(k.split(":")[1] for k in week_keys)
        base_k = Counter(w.kind for w in base)
        for kind in sorted(set(live_k) | set(base_k)):
            log(f"  {kind:<28} live {live_k[kind]:>5}  baseline {base_k[kind]:>5}")
        base_all = [idempotency_key(w) for w in base]
        base_keys = {k for k in base_all if k.split(":")[1] in CORE}
        live_core = {k for k in week_keys if k.split(":")[1] in CORE}
        same = len(base_keys & live_core)
        base_place = {k for k in base_all if k.split(":")[1] in rules.PLACE_KINDS}
        live_place = {k for k in week_keys if k.split(":")[1] in rules.PLACE_KINDS}
        same_place = len(base_place & live_place)
        identical = sorted(week_keys) == sorted(base_all)
        log(f"  vehicle warnings with the same key: {same} of {len(base_keys)} (baseline), "
            f"{len(live_core)} live; place warnings: {same_place} of {len(base_place)}, "
            f"{len(live_place)} live; all keys identical: {identical}; duplicates posted: "
            f"{len(week_keys) - len(set(week_keys))}")
        for k in sorted(set(week_keys) ^ set(base_all))[:10]:
            log(f"    only {'live' if k in set(week_keys) else 'baseline'}: {k}")

        # Live: the next day's fixes as they arrive: up to 02:29:30 local at once, then in
        # real time (the planted night drives start at 02:30), then the rest of the day faster.
        rest = slice(n_week, None)
        rest_arrive = arrive[rest]
        night = week_end + 2 * 3600 + 29 * 60 + 30
        slots = [("catch-up", week_end, night, 0.0)]
        slots += [("real", night + k, night + k + 1, 1.0) for k in range(int(args.live_seconds))]
        a_fast = night + int(args.live_seconds)
        slots += [("fast", a_fast + k * args.live_speed, a_fast + (k + 1) * args.live_speed, 1.0)
                  for k in range(int(np.ceil((week_end + DAY - a_fast) / args.live_speed)))]
        began: dict[str, float] = {}
        live_sent = 0
        next_tick = time.perf_counter()
        for phase, a, b, pause in slots:
            began.setdefault(phase, time.time())
            lo, hi = np.searchsorted(rest_arrive, [a, b])
            ts = np.datetime_as_string((t[rest][lo:hi] * 1e6).astype("datetime64[us]"),
                                       unit="us")
            rows = [[s_, x + "Z", str(o), str(y)] for s_, x, o, y in zip(
                subj[rest][lo:hi].tolist(), ts.tolist(), lon[rest][lo:hi].tolist(),
                lat[rest][lo:hi].tolist(), strict=True)]
            for j in range(0, len(rows), args.batch):
                await bus.publish(f"obs.{DATASET}", batch_of(n, rows[j:j + args.batch]),
                                  msg_id=f"l{n}")
                n += 1
            live_sent += len(rows)
            if phase == "catch-up":
                await caught_up(bus)
                next_tick = time.perf_counter()
            next_tick += pause
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        await caught_up(bus, after=1.0)
        parent.send("stop")
        result = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        log(f"consumer took {result['fixes']:,.0f} fixes ({result['late']:,.0f} too late for "
            f"their window), {result['vehicles']} vehicles")
        real = [lag for at, lag in result["lags"] if began["real"] <= at < began["fast"]]
        fast = [lag for at, lag in result["lags"] if at >= began["fast"]]
        all_keys = await posted_keys(bus)
        log(f"live: {live_sent:,} fixes; real-time phase {len(real)} warnings, lag p50 "
            f"{pct(real, 50)} s p99 {pct(real, 99)} s; x{args.live_speed:g} phase "
            f"{len(fast)} warnings, lag p50 {pct(fast, 50)} s p99 {pct(fast, 99)} s; "
            f"duplicates posted overall: {len(all_keys) - len(set(all_keys))}")
        print(json.dumps({
            "benchmark": "hazchem_week", "value": round(week_s, 2), "unit": "s",
            "baseline": round(base_s, 2), "ratio": round(week_s / base_s, 2),
            "fixes": sent, "vehicles": len(tracks), "fixes_per_s": round(sent / week_s),
            "baseline_fixes_per_s": round(sent / base_s), "warnings": len(week_keys),
            "baseline_warnings": len(base), "same_vehicle_warning_keys": same,
            "baseline_vehicle_warnings": len(base_keys),
            "same_place_warning_keys": same_place, "baseline_place_warnings": len(base_place),
            "all_warning_keys_identical": identical,
            "live_lag_p50_s": pct(real, 50), "live_lag_p99_s": pct(real, 99),
            "live_warnings": len(real), f"x{args.live_speed:g}_lag_p50_s": pct(fast, 50),
            f"x{args.live_speed:g}_lag_p99_s": pct(fast, 99),
            f"x{args.live_speed:g}_warnings": len(fast),
            "target_week_s": 60, "target_lag_p99_s": 2}))
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(10)
        await bus.close()
        await drop(name, prefix)


if __name__ == "__main__":
    asyncio.run(main())
