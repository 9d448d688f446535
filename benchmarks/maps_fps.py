"""Benchmark: the big screen with 5,000 live vehicles updating every 10 s, in Chromium.

    uv run python benchmarks/maps_fps.py [--vehicles 5000] [--interval 10] [--seconds 30]

Runs the mesh behind the screens as processes (tests/maps/stack.py: identity, ingestion,
spatio-temporal, event hub, maps, and the simulator drawing the roads) against a database and
NATS namespace of its own, removed afterwards. The live vehicles are a fleet of `--vehicles` on
the demo city's roads (the simulator's motion model), each reporting every `--interval` s, their
fixes published as observation batches on NATS as ingestion would (one batch a second), so
what is measured is the screen, not the storage pipeline.

Chromium (Debian's, headless) opens the overall situation map signed in, then:
- first render: from navigation start to the first frame with the city and the vehicles
  drawn (`cityos:first-render`);
- frames: every requestAnimationFrame interval for `--seconds`, while vehicles glide and the
  feed pushes changes; fps mean and the worst 1-second window, frame-time p50/p99/max.
Baseline, same run: the same page with the vehicle layer switched off.
Prints one JSON line.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import msgspec
import nats
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness import drop, log  # noqa: E402
from maps.stack import CHROMIUM, CHROMIUM_ARGS, running  # noqa: E402

from cityos_contracts.records import ObservationBatch  # noqa: E402
from cityos_kit.config import load_settings  # noqa: E402
from cityos_simulator.fleet import Fleet  # noqa: E402
from cityos_simulator.roads import load_network  # noqa: E402

ADMIN = os.environ.get("CITYOS_TEST_ADMIN_DATABASE_URL",
                       "postgresql://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("CITYOS_NATS_URL", "nats://127.0.0.1:4222")
DATASET = "bench_gps"

FRAMES_JS = """(seconds) => new Promise((resolve) => {
  const times = [];
  const end = performance.now() + seconds * 1000;
  const step = (now) => { times.push(now); if (now < end) requestAnimationFrame(step); else resolve(times); };
  requestAnimationFrame(step);
})"""



async def database() -> tuple[str, str]:
    name = f"cityos_bench_maps_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    await conn.close()
    return name, url




async def publish_fleet(prefix: str, vehicles: int, interval: float, stop: asyncio.Event) -> None:
    """The fleet's fixes, as ingestion publishes them: a batch every second."""
    fleet = Fleet(load_network(load_settings("benchmark").city_dir), vehicles, time.time(),
                  interval_s=interval, seed=7)
    nc = await nats.connect(NATS_URL)
    encoder = msgspec.json.Encoder()
    seq = 0
    while not stop.is_set():
        fixes = fleet.advance(time.time())
        if len(fixes):
            batch = ObservationBatch(
                batch_id=f"bench-{seq}", dataset=DATASET, version=1, owner="JTJ",
                subject=[str(p) for p in fixes.plate],
                ts=[datetime.fromtimestamp(float(t), UTC) for t in fixes.ts],
                lon=fixes.lon.tolist(), lat=fixes.lat.tolist(),
                speed_kmh=fixes.speed_kmh.tolist(), heading=fixes.heading.tolist())
            await nc.publish(f"{prefix}.obs.{DATASET}", encoder.encode(batch))
            seq += 1
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    await nc.close()


def frame_stats(times: list[float]) -> dict[str, float]:
    deltas = np.diff(np.array(times))
    duration_s = (times[-1] - times[0]) / 1000
    windows = []
    start = times[0]
    while start + 1000 <= times[-1]:
        windows.append(sum(1 for t in times if start < t <= start + 1000))
        start += 250
    return {"fps_mean": round((len(times) - 1) / duration_s, 1),
            "fps_min_1s": float(min(windows)) if windows else 0.0,
            "frame_ms_p50": round(float(np.percentile(deltas, 50)), 2),
            "frame_ms_p99": round(float(np.percentile(deltas, 99)), 2),
            "frame_ms_max": round(float(deltas.max()), 2)}


async def measure(maps: str, token: str, user: dict[str, object], vehicles: int,
                  seconds: float) -> dict[str, object]:
    from playwright.async_api import async_playwright

    session = json.dumps({"token": token, "user": user, "expiresAt": time.time() * 1000 + 5e5})
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(viewport={"width": 1920, "height": 1080})
        await context.add_init_script(f"sessionStorage.setItem('cityos.session', {session!r})")
        page = await context.new_page()
        await page.goto(maps + "/")
        await page.wait_for_function(f"() => window.__cityos && window.__cityos.vehicles() >= "
                                     f"{int(vehicles * 0.98)}", timeout=120_000)
        first = await page.evaluate(
            "() => performance.getEntriesByName('cityos:first-render')[0]?.startTime ?? null")
        await page.wait_for_timeout(2000)
        live = frame_stats(await page.evaluate(FRAMES_JS, seconds))
        drawn = await page.evaluate("() => window.__cityos.vehicles()")
        await page.uncheck("input[data-layer=vehicles]")
        baseline = frame_stats(await page.evaluate(FRAMES_JS, min(seconds, 10)))
        await browser.close()
    return {"first_render_ms": round(first) if first is not None else None, **live,
            "vehicles_drawn": drawn, "baseline_no_vehicles": baseline}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    name, url = await database()
    prefix = f"benchmaps{uuid.uuid4().hex[:6]}"
    stop = asyncio.Event()
    try:
        with running(url, prefix, ROOT / "test-output" / "bench-maps", vehicles=5,
                     push_interval_s=2.0,
                     maps_env={"CITYOS_MAPS_VEHICLE_DATASETS": f"vehicle_gps,{DATASET}"}) as stack:
            password = stack.person("bench_leader", "CMD", ["leader"])
            token = stack.token("bench_leader", password)
            async with httpx.AsyncClient(base_url=stack.maps) as client:
                user = (await client.get("/api/me", headers={
                    "Authorization": f"Bearer {token}"})).json()
            publisher = asyncio.create_task(publish_fleet(prefix, args.vehicles, args.interval,
                                                          stop))
            log(f"publishing {args.vehicles} vehicles every {args.interval} s; waiting a cycle")
            await asyncio.sleep(args.interval + 2)
            result = await measure(stack.maps, token, user, args.vehicles, args.seconds)
            stop.set()
            await publisher
    finally:
        stop.set()
        await drop(name, prefix)
    print(json.dumps({"benchmark": "maps_fps", "vehicles": args.vehicles,
                      "update_interval_s": args.interval, "measured_s": args.seconds,
                      "viewport": "1920x1080", **result,
                      "targets": {"fps_min": 30, "first_render_ms": 2000}}))


if __name__ == "__main__":
    asyncio.run(main())
