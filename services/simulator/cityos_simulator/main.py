"""`cityos-simulator`: the demo city live — vehicles, sensors and cameras pushing data through the
public ingestion API, exactly as a department's system would, and (given units' gateway
credentials) field staff on patrol reported through dispatch's field-staff API."""

import argparse
import asyncio
import hashlib
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np

from cityos_kit.city import City
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.config import load_settings
from cityos_kit.telemetry import logger, setup_telemetry
from cityos_simulator import datasets
from cityos_simulator.citizens import Citizens
from cityos_simulator.client import Ingestion, Stopped
from cityos_simulator.devices import (
    Cameras,
    Sensors,
    Site,
    camera_sites,
    sensor_sites,
    site_records,
)
from cityos_simulator.fixes import Fixes, iso_times
from cityos_simulator.fleet import Fleet
from cityos_simulator.generator import iter_batches, to_ndjson
from cityos_simulator.roads import RoadNetwork, load_network
from cityos_simulator.staff import FieldStaff

log = logger("cityos_simulator")
ENTITY_CHUNK = 500
SUMMARY_EVERY_S = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cityos-simulator", description=__doc__)
    p.add_argument("--ingestion-url",
                   default=os.environ.get("CITYOS_INGESTION_URL", "http://127.0.0.1:8001"))
    p.add_argument("--events-url",
                   default=os.environ.get("CITYOS_EVENTS_URL", "http://127.0.0.1:8003"),
                   help="the event hub, for citizens' reports")
    p.add_argument("--reports-per-hour", type=float, default=360.0)
    p.add_argument("--vehicles", type=int, default=200)
    p.add_argument("--sensors", type=int, default=40)
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--tick", type=float, default=5.0, help="seconds of wall time between pushes")
    p.add_argument("--speedup", type=float, default=1.0,
                   help="simulated seconds per wall second; the clock never passes real time")
    p.add_argument("--start", type=datetime.fromisoformat, default=None,
                   help="simulated start (ISO 8601 with offset); default now, or a day ago "
                        "when --speedup > 1 so that the fast clock has room to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gps-interval", type=float, default=10.0)
    p.add_argument("--sensor-interval", type=float, default=60.0)
    p.add_argument("--clips-per-hour", type=float, default=6.0, help="per camera")
    p.add_argument("--plates", choices=("ascii", "cn"), default="ascii")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--issuer", default=os.environ.get("CITYOS_AUTH_ISSUER",
                                                      "http://127.0.0.1:8009"),
                   help="token issuer (the identity service)")
    p.add_argument("--client-id", default=os.environ.get("CITYOS_CLIENT_ID", ""),
                   help="the simulator's client id (env CITYOS_CLIENT_ID)")
    p.add_argument("--dispatch-url",
                   default=os.environ.get("CITYOS_DISPATCH_URL", "http://127.0.0.1:8005"),
                   help="dispatch, for the field staff's duty and positions")
    p.add_argument("--gateways", type=Path,
                   default=os.environ.get("CITYOS_SIMULATOR_GATEWAYS") or None,
                   help="units' device-gateway credentials (lines `gateway UNIT client_id=.. "
                        "client_secret=..`); none: no field staff")
    p.add_argument("--staff-per-unit", type=int, default=5)
    p.add_argument("--staff-interval", type=float, default=10.0,
                   help="seconds between a unit's position batches")
    args = p.parse_args(argv)
    if args.start is not None and args.start.tzinfo is None:
        p.error("--start needs a UTC offset, e.g. 2025-05-01T08:00:00+08:00")
    return args


class SimClock:
    """Simulated epoch seconds: `speedup` times faster than the wall, capped at real time
    because a feed from the future would (rightly) be rejected."""

    def __init__(self, start: float, speedup: float) -> None:
        self.start, self.speedup = start, speedup
        self._t0 = time.monotonic()

    def now(self) -> float:
        return min(self.start + (time.monotonic() - self._t0) * self.speedup, time.time())


def _key(prefix: str, body: bytes) -> str:
    """Content-addressed key: re-posting unchanged static data after a restart is a no-op."""
    return f"{prefix}-{hashlib.sha256(body).hexdigest()[:16]}"


async def load_entities(ing: Ingestion, versions: dict[str, int], net: RoadNetwork,
                        sensors: list[Site], cameras: list[Site]) -> None:
    posts: list[Awaitable[Any]] = []
    features = list(net.features)
    for lo in range(0, len(features), ENTITY_CHUNK):
        chunk = features[lo : lo + ENTITY_CHUNK]
        body = msgspec.json.encode({"type": "FeatureCollection", "features": chunk})
        posts.append(ing.post("roads", versions["roads"], body, "application/geo+json",
                              _key(f"roads-v{versions['roads']}", body), len(chunk)))
    for name, rows in (("sensor_sites", site_records(sensors, "sensor_id")),
                       ("cameras", site_records(cameras, "camera_id"))):
        body = msgspec.json.encode(rows)
        posts.append(ing.post(name, versions[name], body, "application/json",
                              _key(f"{name}-v{versions[name]}", body), len(rows)))
    await asyncio.gather(*posts)


def _summary(ing: Ingestion, sim_now: float, staff: FieldStaff | None) -> None:
    t = ing.tallies
    log.info("simulator.summary", sim_time=iso_times(np.array([sim_now]))[0],
             posted={k: v.posted for k, v in t.items()},
             accepted={k: v.accepted for k, v in t.items()},
             rejected={k: v.rejected for k, v in t.items()},
             failed_batches=sum(v.failed_batches for v in t.values()),
             duplicate_batches=sum(v.duplicate_batches for v in t.values()),
             reasons=dict(sum((v.reasons for v in t.values()), Counter())),
             staff=staff.tally() if staff else None)


HEARTBEAT = Path(tempfile.gettempdir()) / "cityos-simulator.heartbeat"


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    settings = load_settings("simulator")
    net = load_network(settings.city_dir, args.seed)
    sensor_list = sensor_sites(net, args.sensors, args.seed)
    camera_list = camera_sites(net, args.cameras, args.seed)
    run_id = uuid.uuid4().hex[:12]
    log.info("simulator.starting", ingestion=args.ingestion_url, run_id=run_id,
             vehicles=args.vehicles, sensors=len(sensor_list), cameras=len(camera_list),
             roads=len(net.features), speedup=args.speedup)

    # Field staff are on duty now, whatever the simulated clock says, and need neither
    # ingestion nor the vehicles: their gateways report on their own, from the start.
    staff = _field_staff(args, settings.city_dir, net)
    patrol = asyncio.create_task(staff.run(stop), name="field-staff") if staff else None
    try:
        await _feeds(args, stop, settings.city_dir, net, sensor_list, camera_list, run_id, staff)
    finally:
        if staff and patrol:
            await patrol
            await staff.off_duty()
            await staff.close()


async def _feeds(args: argparse.Namespace, stop: asyncio.Event, city_dir: Path,
                 net: RoadNetwork, sensor_list: list[Site], camera_list: list[Site], run_id: str,
                 staff: FieldStaff | None) -> None:
    secret = os.environ.get("CITYOS_CLIENT_SECRET", "")
    auth = ClientCredentials(args.issuer, args.client_id, secret) if args.client_id else None
    async with httpx.AsyncClient(base_url=args.ingestion_url, timeout=30.0, auth=auth) as http, \
            httpx.AsyncClient(base_url=args.events_url, timeout=30.0, auth=auth) as events:
        ing = Ingestion(http, stop)
        versions = {r.name: await ing.register(r) for r in datasets.ALL}
        log.info("datasets.registered", versions=versions)
        await load_entities(ing, versions, net, sensor_list, camera_list)

        # The clock starts once ingestion answers, so a long wait does not become a backlog.
        if args.start is not None:
            start = args.start.timestamp()
        else:
            start = time.time() - (86400.0 if args.speedup > 1 else 0.0)
        clock = SimClock(start, args.speedup)
        fleet = Fleet(net, args.vehicles, start, args.gps_interval, args.seed, args.plates)
        sensors = Sensors(sensor_list, start, args.sensor_interval, args.seed)
        cameras = Cameras(camera_list, start, args.clips_per_hour, args.seed)
        next_summary = time.monotonic() + SUMMARY_EVERY_S
        citizens = Citizens(City(city_dir).categories, net, args.reports_per_hour, args.seed)
        seq = 0
        while not stop.is_set():
            began = time.monotonic()
            now = clock.now()
            await _tick(ing, versions, f"sim-{run_id}-{seq}", fleet.advance(now),
                        sensors.advance(now), cameras.advance(now), args.batch_size)
            await citizens.send(events, datetime.now(UTC), args.tick, f"report-{run_id}")
            seq += 1
            HEARTBEAT.touch()  # the liveness probe: a simulator that stopped ticking restarts
            if time.monotonic() >= next_summary:
                _summary(ing, now, staff)
                next_summary += SUMMARY_EVERY_S
            if await ing.pause(max(0.0, args.tick - (time.monotonic() - began))):
                break
        _summary(ing, clock.now(), staff)


def _field_staff(args: argparse.Namespace, city_dir: Path, net: RoadNetwork
                 ) -> FieldStaff | None:
    if args.gateways is None or not args.gateways.is_file():
        log.info("staff.off", reason="no gateway credentials (--gateways)")
        return None
    staff = FieldStaff.from_file(args.gateways, City(city_dir), net, args.dispatch_url,
                                 args.issuer, args.staff_per_unit, args.seed, time.time(),
                                 args.staff_interval)
    log.info("staff.on", units=sorted(staff.squads), per_unit=args.staff_per_unit,
             dispatch=args.dispatch_url)
    return staff


async def _tick(ing: Ingestion, versions: dict[str, int], key: str, fixes: Fixes,
                readings: list[dict[str, Any]], clips: list[dict[str, Any]],
                batch_size: int) -> None:
    posts: list[Awaitable[Any]] = []
    for i, batch in enumerate(iter_batches(fixes, batch_size)):
        posts.append(ing.post("vehicle_gps", versions["vehicle_gps"], to_ndjson(batch),
                              "application/x-ndjson", f"{key}-gps-{i}", len(batch)))
    if readings:
        posts.append(ing.post("env_sensors", versions["env_sensors"],
                              msgspec.json.encode(readings), "application/json",
                              f"{key}-env", len(readings)))
    if clips:
        posts.append(ing.post("camera_clips", versions["camera_clips"],
                              msgspec.json.encode(clips), "application/json",
                              f"{key}-clips", len(clips)))
    await asyncio.gather(*posts)


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(args, stop)
    except Stopped:
        pass
    log.info("simulator.stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_telemetry(load_settings("simulator"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the summary
    try:
        asyncio.run(_main(args))
    except RuntimeError as exc:  # a registration ingestion refused: nothing sensible to retry
        log.error("simulator.failed", error=str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
