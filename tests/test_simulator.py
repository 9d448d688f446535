"""The demo-city simulator without a network: road network, GPS generator, wire forms, datasets."""

import csv
import io
import json
from collections import deque
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest

from cityos_contracts.datasets import DatasetRegistration
from cityos_kit.city import City
from cityos_kit.config import DEFAULT_CITY_DIR, load_settings
from cityos_simulator import datasets
from cityos_simulator.devices import Cameras, Sensors, camera_sites, sensor_sites, site_records
from cityos_simulator.fixes import NOISE_DUPLICATE, NOISE_LATE, NOISE_OUTLIER, Fixes
from cityos_simulator.fleet import Fleet
from cityos_simulator.generator import generate_fixes, iter_batches, to_csv, to_json, to_ndjson
from cityos_simulator.roads import (
    KM_PER_DEG_LAT,
    RoadNetwork,
    build_network,
    division_bounds,
    load_network,
)

CST = timezone(timedelta(hours=8))
START = datetime(2025, 5, 1, 8, 0, tzinfo=CST)
SPEEDS = {"expressway": {100}, "arterial": {60}, "local": {30, 40}}


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return load_network()


@pytest.fixture(scope="module")
def hour_of_fixes(net: RoadNetwork) -> Fixes:
    return generate_fixes(50, START, timedelta(hours=1), interval_s=10, seed=7, network=net)


def _distance_m(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray,
                lat2: np.ndarray) -> np.ndarray:
    kx = 111_320 * np.cos(np.radians((lat1 + lat2) / 2))
    return np.hypot((lon2 - lon1) * kx, (lat2 - lat1) * KM_PER_DEG_LAT * 1000)


def test_network_is_connected_and_inside_the_city(net: RoadNetwork) -> None:
    graph = net.graph()
    seen, todo = {0}, deque([0])
    while todo:
        for nb in graph[todo.popleft()]:
            if nb not in seen:
                seen.add(nb)
                todo.append(nb)
    assert len(seen) == net.n_nodes > 500

    city = division_bounds(City(DEFAULT_CITY_DIR).divisions)
    assert (city.west, city.south, city.east, city.north) == (120.70, 31.90, 121.10, 32.15)
    for f in net.features:
        assert f["geometry"]["type"] == "LineString"
        coords = f["geometry"]["coordinates"]
        assert len(coords) >= 2
        assert all(city.contains(lon, lat) for lon, lat in coords)
        props = f["properties"]
        assert props["oneway"] is False
        assert props["speed_kmh"] in SPEEDS[props["class"]]
    classes = {f["properties"]["class"] for f in net.features}
    assert classes == {"expressway", "arterial", "local"}
    ids = [f["properties"]["road_id"] for f in net.features]
    assert len(set(ids)) == len(ids)


def test_every_link_belongs_to_a_feature_with_its_speed(net: RoadNetwork) -> None:
    speeds = np.array([net.features[k]["properties"]["speed_kmh"] for k in net.link_feature])
    assert np.array_equal(speeds, net.link_speed_kmh)
    # Links are symmetric: every road can be driven both ways.
    pairs = {(int(s), int(d)) for s, d in zip(np.repeat(np.arange(net.n_nodes), net.degree),
                                              net.link_dst, strict=True)}
    assert all((d, s) in pairs for s, d in pairs)


def test_network_is_deterministic() -> None:
    bounds = division_bounds(City(DEFAULT_CITY_DIR).divisions)
    a, b = build_network(bounds, seed=3), build_network(bounds, seed=3)
    assert a.features == b.features
    assert build_network(bounds, seed=4).features != a.features


def test_generated_fixes_have_the_expected_shape(hour_of_fixes: Fixes) -> None:
    fx = hour_of_fixes
    assert len(fx) == 50 * 360
    assert len(set(fx.plate.tolist())) == 50
    assert np.all(np.diff(fx.ts) >= 0), "a feed delivers in time order"
    assert fx.ts.min() >= START.timestamp()
    assert fx.ts.max() < START.timestamp() + 3600
    city = division_bounds(City(DEFAULT_CITY_DIR).divisions)
    assert np.all((fx.lon > city.west) & (fx.lon < city.east))
    assert np.all((fx.lat > city.south) & (fx.lat < city.north))
    assert np.all((fx.heading >= 0) & (fx.heading < 360))
    assert fx.speed_kmh.max() < 110 and fx.speed_kmh.min() >= 0
    assert (fx.speed_kmh == 0).mean() > 0.02, "vehicles sometimes stop"
    assert not fx.noise.any()


def test_each_vehicle_moves_consistently(hour_of_fixes: Fixes) -> None:
    fx = hour_of_fixes
    ratios = []
    for plate in np.unique(fx.plate):
        v = fx.take(fx.plate == plate)
        dt = np.diff(v.ts)
        assert np.all(dt > 9) and np.all(dt < 11)
        moved = _distance_m(v.lon[:-1], v.lat[:-1], v.lon[1:], v.lat[1:])
        # No teleporting: nothing goes faster than an expressway allows (plus GPS noise).
        assert np.all(moved / dt * 3.6 < 100 * 1.05 + 8)
        both_driving = (v.speed_kmh[:-1] > 5) & (v.speed_kmh[1:] > 5)
        reported = (v.speed_kmh[:-1] + v.speed_kmh[1:]) / 2
        ratios.append(np.median(moved[both_driving] / dt[both_driving] * 3.6
                                / reported[both_driving]))
        assert v.lon.std() + v.lat.std() > 0.005, f"{plate} should drive somewhere"
    # Turning corners shortens the straight line a little; otherwise speed matches movement.
    assert 0.85 < np.median(ratios) < 1.1


def test_generation_is_seeded(net: RoadNetwork) -> None:
    a = generate_fixes(5, START, timedelta(minutes=10), seed=1, network=net)
    b = generate_fixes(5, START, timedelta(minutes=10), seed=1, network=net)
    c = generate_fixes(5, START, timedelta(minutes=10), seed=2, network=net)
    assert np.array_equal(a.lon, b.lon) and not np.array_equal(a.lon, c.lon)
    with pytest.raises(ValueError):
        generate_fixes(5, START.replace(tzinfo=None), timedelta(minutes=10), network=net)


def test_noise_options(net: RoadNetwork) -> None:
    clean = generate_fixes(100, START, timedelta(minutes=30), seed=3, network=net)
    fx = generate_fixes(100, START, timedelta(minutes=30), seed=3, network=net,
                        duplicates=0.02, out_of_order=0.02, outliers=0.02)
    n_dup = int((fx.noise & NOISE_DUPLICATE != 0).sum())
    assert len(fx) == len(clean) + n_dup and 0.01 < n_dup / len(clean) < 0.03
    assert (np.diff(fx.ts) < 0).sum() > 0.005 * len(fx)
    assert (fx.noise & NOISE_LATE != 0).sum() > 0
    wild = fx.noise & NOISE_OUTLIER != 0
    city = division_bounds(City(DEFAULT_CITY_DIR).divisions)
    outside = ~((fx.lon > city.west) & (fx.lon < city.east)
                & (fx.lat > city.south) & (fx.lat < city.north))
    assert outside[wild].mean() > 0.5 and not outside[~wild].any()


def test_wire_forms_parse_back(hour_of_fixes: Fixes) -> None:
    batches = list(iter_batches(hour_of_fixes, 7000))
    assert [len(b) for b in batches] == [7000, 7000, 4000]
    batch = batches[1]

    lines = to_ndjson(batch).decode().splitlines()
    assert len(lines) == len(batch)
    rows = [json.loads(line) for line in lines]
    assert list(rows[0]) == ["plate", "ts", "lon", "lat", "speed_kmh", "heading"]
    assert rows == json.loads(to_json(batch))
    for row, ts, lon in zip(rows[:50], batch.ts, batch.lon, strict=False):
        parsed = datetime.fromisoformat(row["ts"])
        assert parsed.utcoffset() == timedelta(hours=8)
        assert abs(parsed.timestamp() - ts) < 0.001
        assert abs(row["lon"] - lon) < 1e-6

    table = list(csv.DictReader(io.StringIO(to_csv(batch).decode())))
    assert len(table) == len(batch)
    assert [r["plate"] for r in table] == batch.plate.tolist()
    assert np.allclose([float(r["lat"]) for r in table], batch.lat, atol=1e-6)


def test_chinese_plates_survive_gbk_csv(net: RoadNetwork) -> None:
    fx = generate_fixes(3, START, timedelta(minutes=1), network=net, plate_style="cn")
    assert fx.plate[0].startswith("苏F·")
    table = list(csv.DictReader(io.StringIO(to_csv(fx, encoding="gbk").decode("gbk"))))
    assert [r["plate"] for r in table] == fx.plate.tolist()


def test_live_fleet_keeps_moving_across_ticks(net: RoadNetwork) -> None:
    t0 = START.timestamp()
    fleet = Fleet(net, 20, t0, interval_s=10, seed=5, horizon_s=120)
    ticks = [fleet.advance(t0 + s) for s in range(5, 1805, 5)]  # re-plans many times
    fx = [f for f in ticks if len(f)]
    assert sum(len(f) for f in fx) == 20 * 180
    plates = np.concatenate([f.plate for f in fx])
    ts = np.concatenate([f.ts for f in fx])
    lon = np.concatenate([f.lon for f in fx])
    lat = np.concatenate([f.lat for f in fx])
    for plate in fleet.plates[:5]:
        m = plates == plate
        dt = np.diff(ts[m])
        assert np.allclose(dt, 10)
        moved = _distance_m(lon[m][:-1], lat[m][:-1], lon[m][1:], lat[m][1:])
        assert np.all(moved / dt * 3.6 < 113), "no jumps when the plan is renewed"
    assert len(fleet.advance(t0 + 1800)) == 0  # the same moment twice yields nothing new


def test_sensors_and_cameras(net: RoadNetwork) -> None:
    t0 = START.timestamp()
    sensors = Sensors(sensor_sites(net, 40), t0, interval_s=60)
    readings = sensors.advance(t0 + 600)
    assert len(readings) == 400
    assert len({r["sensor_id"] for r in readings}) == 40
    assert all(0 < r["pm25"] < 1000 and 30 < r["noise_db"] < 100 for r in readings)
    cams = camera_sites(net, 20)
    assert len({(c.lon, c.lat) for c in cams}) == 20
    clips = Cameras(cams, t0, clips_per_hour=6).advance(t0 + 3600)
    assert 60 < len(clips) < 200
    assert len({c["clip_id"] for c in clips}) == len(clips)
    assert all(c["uri"].endswith(c["clip_id"] + ".mp4") for c in clips)


def test_registrations_are_valid_contracts(net: RoadNetwork) -> None:
    owners = set(City(DEFAULT_CITY_DIR).departments)
    for reg in datasets.ALL:
        wire = msgspec.json.encode(reg)
        assert json.loads(wire)["schema"] == "cityos.dataset_registration.v1"
        assert msgspec.json.decode(wire, type=DatasetRegistration) == reg
        assert msgspec.convert(msgspec.to_builtins(reg), DatasetRegistration) == reg
        assert reg.owner in owners
        names = {f.name for f in reg.fields}
        mapped = {v for v in msgspec.structs.asdict(reg.mapping).values() if v}
        assert mapped <= names, f"{reg.name} maps fields it does not declare"
    # The records the simulator sends carry exactly the declared fields.
    declared = {r.name: {f.name for f in r.fields} for r in datasets.ALL}
    fx = generate_fixes(2, START, timedelta(minutes=1), network=net)
    assert set(json.loads(to_json(fx))[0]) == declared["vehicle_gps"]
    assert set(net.features[0]["properties"]) | {"geometry"} == declared["roads"]
    t0 = START.timestamp()
    reading = Sensors(sensor_sites(net, 2), t0).advance(t0 + 120)[0]
    assert set(reading) == declared["env_sensors"]
    clip = Cameras(camera_sites(net, 5), t0, clips_per_hour=60).advance(t0 + 3600)[0]
    assert set(clip) == declared["camera_clips"]
    assert set(site_records(sensor_sites(net, 2), "sensor_id")[0]) == declared["sensor_sites"]
    assert set(site_records(camera_sites(net, 2), "camera_id")[0]) == declared["cameras"]


def test_citizens_report_the_city_s_incidents_and_sometimes_the_same_one_twice() -> None:
    import math
    from datetime import UTC

    from cityos_contracts.cases import ReportIn
    from cityos_simulator.citizens import Citizens

    city = City(load_settings("test").city_dir)
    citizens = Citizens(city.categories, load_network(city.directory, 0), per_hour=60, seed=1)
    examples = [e.rstrip("。！") for c in city.categories for e in c["examples"]]
    reports = [citizens.report(datetime.now(UTC), f"k{i}") for i in range(200)]
    cores = []
    for report in reports:
        assert msgspec.convert(msgspec.to_builtins(report), ReportIn) == report
        assert report.lon is not None and report.lat is not None
        assert city.bbox.contains(report.lon, report.lat)
        (core,) = [e for e in examples if e in report.text]
        cores.append((core, report.lon, report.lat))
    # About a quarter repeat an earlier incident nearby (another channel, other words).
    repeats = sum(any(c == core and math.dist((x, y), (lon, lat)) < 1e-3
                      for c, x, y in cores[:i]) for i, (core, lon, lat) in enumerate(cores))
    assert 30 <= repeats <= 80
    assert len({r.channel for r in reports}) >= 4
    assert sum(citizens.due(60) for _ in range(600)) in range(500, 700)  # 60 an hour
