"""A fast generator of GPS fixes for benchmarks and tests: millions of fixes in seconds.

Usage: `fixes = generate_fixes(1000, start, timedelta(hours=1))`, then `iter_batches(fixes, 5000)`
and `to_ndjson(batch)` / `to_csv(batch)` to push them through the ingestion API.
"""

from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from cityos_simulator import motion
from cityos_simulator.fixes import (
    NOISE_DUPLICATE,
    NOISE_LATE,
    NOISE_OUTLIER,
    Fixes,
    iter_batches,
    records,
    to_csv,
    to_json,
    to_ndjson,
)
from cityos_simulator.roads import RoadNetwork, load_network

__all__ = ["Fixes", "generate_fixes", "iter_batches", "make_plates", "records", "to_csv",
           "to_json", "to_ndjson"]

PlateStyle = Literal["ascii", "cn"]
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # Chinese plates skip I and O


def make_plates(n: int, style: PlateStyle = "ascii") -> np.ndarray:
    """Unique plates: "DG-00001" (ASCII-safe) or "苏F·A0001" (a Jiangsu plate, as real feeds send)."""
    if style == "ascii":
        return np.array([f"DG-{i + 1:05d}" for i in range(n)])
    return np.array([f"苏F·{_PLATE_LETTERS[(i // 10000) % 24]}{i % 10000:04d}" for i in range(n)])


def generate_fixes(
    n_vehicles: int,
    start: datetime,
    duration: timedelta,
    interval_s: float = 10.0,
    seed: int = 0,
    *,
    network: RoadNetwork | None = None,
    plate_style: PlateStyle = "ascii",
    gps_noise_m: float = 5.0,
    duplicates: float = 0.0,
    out_of_order: float = 0.0,
    outliers: float = 0.0,
) -> Fixes:
    """Fixes of vehicles driving the road network, in the order a feed delivers them (by time).

    Each vehicle reports every `interval_s` from its own phase, so there are exactly
    n_vehicles * floor(duration / interval_s) clean fixes, all in [start, start + duration).
    The noise options are shares of rows: `duplicates` re-sent right after the original,
    `out_of_order` delivered 30-300 s late, `outliers` with impossible positions or speeds.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = np.random.default_rng(seed)
    net = network if network is not None else load_network()
    total = duration.total_seconds()
    per_vehicle = int(total // interval_s)

    plan = motion.start_plan(net, n_vehicles, total, rng)
    phase = rng.uniform(0.0, interval_s, n_vehicles)
    # Small clock jitter per fix; under half an interval so each vehicle's times stay increasing.
    ticks = np.arange(per_vehicle, dtype=np.float64) * interval_s
    t = (phase[:, None] + ticks[None, :]).ravel()
    t += rng.uniform(-0.2, 0.2, len(t)) * min(interval_s, 1.0)
    t = np.clip(t, 0.0, np.nextafter(total, 0.0))
    vehicle = np.repeat(np.arange(n_vehicles), per_vehicle)
    where = motion.sample(plan, net, vehicle, t, rng, gps_noise_m)

    order = np.argsort(t, kind="stable")
    plates = make_plates(n_vehicles, plate_style)
    fixes = Fixes(
        plate=plates[vehicle[order]],
        ts=start.timestamp() + t[order],
        lon=where.lon[order],
        lat=where.lat[order],
        speed_kmh=where.speed_kmh[order],
        heading=where.heading[order],
        noise=np.zeros(len(t), dtype=np.uint8),
    )
    if outliers:
        fixes = _outliers(fixes, outliers, rng)
    if duplicates:
        fixes = _duplicates(fixes, duplicates, rng)
    if out_of_order:
        fixes = _late(fixes, out_of_order, rng)
    return fixes


def _outliers(fixes: Fixes, share: float, rng: np.random.Generator) -> Fixes:
    """Null-island fixes, jumps of tens of km, swapped coordinates and absurd speeds."""
    hit = np.flatnonzero(rng.random(len(fixes)) < share)
    lon, lat, speed = fixes.lon.copy(), fixes.lat.copy(), fixes.speed_kmh.copy()
    kind = rng.integers(0, 4, len(hit))
    zero, jump, swap, fast = (hit[kind == k] for k in range(4))
    lon[zero], lat[zero] = 0.0, 0.0
    lon[jump] += rng.choice([-1.0, 1.0], len(jump)) * rng.uniform(0.5, 2.0, len(jump))
    lat[jump] += rng.choice([-1.0, 1.0], len(jump)) * rng.uniform(0.5, 2.0, len(jump))
    lon[swap], lat[swap] = fixes.lat[swap], fixes.lon[swap]
    speed[fast] = rng.uniform(250.0, 999.0, len(fast))
    noise = fixes.noise.copy()
    noise[hit] |= NOISE_OUTLIER
    return Fixes(fixes.plate, fixes.ts, lon, lat, speed, fixes.heading, noise)


def _duplicates(fixes: Fixes, share: float, rng: np.random.Generator) -> Fixes:
    repeat = np.where(rng.random(len(fixes)) < share, 2, 1)
    index = np.repeat(np.arange(len(fixes)), repeat)
    out = fixes.take(index)
    # The second copy of a pair is the re-sent one.
    second = np.zeros(len(index), dtype=bool)
    second[1:] = index[1:] == index[:-1]
    noise = out.noise.copy()
    noise[second] |= NOISE_DUPLICATE
    return Fixes(out.plate, out.ts, out.lon, out.lat, out.speed_kmh, out.heading, noise)


def _late(fixes: Fixes, share: float, rng: np.random.Generator) -> Fixes:
    late = rng.random(len(fixes)) < share
    arrival = fixes.ts + np.where(late, rng.uniform(30.0, 300.0, len(fixes)), 0.0)
    order = np.argsort(arrival, kind="stable")
    out = fixes.take(order)
    noise = out.noise.copy()
    noise[late[order]] |= NOISE_LATE
    return Fixes(out.plate, out.ts, out.lon, out.lat, out.speed_kmh, out.heading, noise)
