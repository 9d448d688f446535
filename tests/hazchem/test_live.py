"""Live warnings: observation batches on `obs.<dataset>` (with duplicates, out-of-order and late
fixes, outliers) become warnings on `reports.system` exactly once, across a restart of the
consumer, and the same ones a re-computation of the whole day gives.

The hazchem app runs as built for production (`build_app`, its consumer started from the
CITYOS_HAZCHEM_* settings), reading the places from the spatio-temporal API under test.
"""

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from data_platform.conftest import issuer, spatiotemporal  # noqa: F401
from hazchem.interception import OLD, road_grid, write_officers
from hazchem.posted import hazchem_reports
from litestar.exceptions import HTTPException
from litestar.testing import AsyncTestClient
from nats.js.errors import NotFoundError
from stquery.conftest import entity, st, store, write_entities  # noqa: F401
from waiting import eventually

from cityos_contracts.records import Entity, ObservationBatch
from cityos_contracts.subjects import STREAMS
from cityos_hazchem import evaluate, rules, scenario, stays
from cityos_hazchem.app import build_app
from cityos_hazchem.live import OBS_STREAM, PlaceMemory, Registered
from cityos_hazchem.reports import idempotency_key
from cityos_hazchem.rules import Thresholds, Track, Trip
from cityos_kit.auth import AuthPlugin
from cityos_kit.bus import Bus
from cityos_spatiotemporal.queries import staypoints

GPS, FIRMS, POIS, VEHICLES = "live_gps", "live_firms", "live_pois", "live_vehicles"
TRIPS, ROADS, STAFF = "live_trips", "live_roads", "live_staff"
CORE = (rules.CLOSED_STAY, rules.NOTHING_STAY, rules.FATIGUE, rules.NIGHT, rules.NON_OPERATING,
        rules.ROUTE_DEVIATION)
DURABLE = f"hazchem-live-{GPS}"


WEEK = 7 * 86400.0


def renamed(sc: scenario.Scenario) -> scenario.Scenario:
    """The planted day a week later and under vehicle names of this test's own: the compute
    test posts the same scenario, and a warning overlapping one already posted (same subject,
    kind and time) would rightly count as posted."""
    e = sc.enterprises
    return replace(sc, tracks=[Track("L-" + t.vehicle, t.t + WEEK, t.lon, t.lat)
                               for t in sc.tracks],
                   licensed={"L-" + v: ok for v, ok in sc.licensed.items()},
                   truth={"L-" + v: k for v, k in sc.truth.items()},
                   trips=[Trip("L-" + t.trip_id, "L-" + t.vehicle, t.start + WEEK, t.end + WEEK,
                               t.lon, t.lat) for t in sc.trips],
                   enterprises=replace(e, status_since=e.status_since + WEEK,
                                       licence_until=e.licence_until + WEEK
                                       if e.licence_until is not None else None))


@pytest.fixture(scope="module")
async def planted(st: Any, store: Any) -> scenario.Scenario:  # noqa: F811
    sc = renamed(scenario.generate(copies=1))
    e = sc.enterprises
    assert e.credit_code is not None and e.licence_no is not None and e.licence_until is not None
    await write_entities(store, FIRMS, [
        entity(str(e.id[i]), float(e.lon[i]), float(e.lat[i]), category=str(e.kind[i]),
               status=str(e.status[i]), credit_code=str(e.credit_code[i]),
               licence_no=str(e.licence_no[i]),
               # A date: valid through that local day (the scenario's until is its end).
               licence_valid_until=datetime.fromtimestamp(float(e.licence_until[i]) - 1,
                                                          scenario.LOCAL).date().isoformat(),
               **({"valid_from": datetime.fromtimestamp(float(e.status_since[i]), UTC)}
                  if e.status[i] != "operating" else {}))
        for i in range(len(e))])
    p = sc.pois
    await write_entities(store, POIS, [entity(str(p.id[i]), float(p.lon[i]), float(p.lat[i]),
                                              category=str(p.kind[i])) for i in range(len(p))])
    await write_entities(store, VEHICLES, [entity(v, *scenario.ORIGIN, licensed=ok)
                                           for v, ok in sc.licensed.items()])
    await write_entities(store, TRIPS, [Entity(
        entity_id=t.trip_id, name=None, category="trip", valid_from=OLD,
        geometry={"type": "LineString", "coordinates": np.column_stack((t.lon, t.lat)).tolist()},
        attrs={"vehicle": t.vehicle, "start": datetime.fromtimestamp(t.start, UTC).isoformat(),
               "end": datetime.fromtimestamp(t.end, UTC).isoformat()}) for t in sc.trips])
    await write_entities(store, ROADS, road_grid())
    await write_officers(store, STAFF)
    return sc


def arrivals(sc: scenario.Scenario, seed: int = 3) -> list[ObservationBatch]:
    """What a GPS gateway sends: every minute (of fix time) the fixes of that minute, with the
    scenario's duplicates and outliers, plus 3% of fixes arriving 2-10 minutes late."""
    rng = np.random.default_rng(seed)
    rows = [(tr.vehicle, float(t), float(x), float(y)) for tr in sc.tracks
            for t, x, y in zip(tr.t, tr.lon, tr.lat, strict=True)]
    sent = np.array([r[1] for r in rows])
    late = rng.random(len(rows)) < 0.03
    sent[late] += rng.uniform(120, 600, int(late.sum()))
    minute = np.floor(sent / 60)
    batches = []
    for m in np.unique(minute):
        idx = rng.permutation(np.flatnonzero(minute == m))  # out of order within a batch too
        batches.append(ObservationBatch(
            batch_id=f"live-{int(m)}", dataset=GPS, version=1, owner="JTJ",
            subject=[rows[i][0] for i in idx],
            ts=[datetime.fromtimestamp(rows[i][1], UTC) for i in idx],
            lon=[rows[i][2] for i in idx], lat=[rows[i][3] for i in idx]))
    return batches


def closed_stays(tracks: list[Track]) -> rules.Stays:
    """The spatio-temporal service's stay points (what the compute endpoint reads)."""
    p = stays.COMPUTE
    parts = []
    for tr in tracks:
        fx = staypoints.Fixes(np.array([0, len(tr.t)]), tr.t, tr.lon, tr.lat)
        s, _ = staypoints.detect(fx, staypoints.Params(p.distance_m, p.duration_s, p.max_gap_s))
        parts.append(rules.Stays(np.array([tr.vehicle] * len(s), dtype=str), s.arrival,
                                 s.departure, s.lon, s.lat))
    return stays.concat(parts)


def mid_deviation(sc: scenario.Scenario, batches: list[ObservationBatch]) -> int:
    """The first batch arriving 7 min into L-ROUTE-0's ~10-min deviation: its warning is due
    (5 min off the route) and the vehicle still off it."""
    th = Thresholds()
    tr = next(rules.clean(t, th) for t in sc.tracks if t.vehicle == "L-ROUTE-0")
    (w,) = rules.route_deviation(tr, [t for t in sc.trips if t.vehicle == tr.vehicle], th)
    return next(i for i, b in enumerate(batches)
                if int(b.batch_id.rsplit("-", 1)[1]) * 60 >= w.start + 7 * 60)


async def _caught_up(bus: Bus, durable: str = DURABLE) -> bool:
    """The live consumer acknowledged every batch published so far."""
    stream = bus.stream_name(OBS_STREAM)
    try:
        info = await bus.js.consumer_info(stream, durable)
    except NotFoundError:  # the consumer's task has not created it yet
        return False
    return (info.ack_floor.stream_seq or 0) >= (await bus.js.stream_info(stream)).state.last_seq


@pytest.fixture(scope="module")
def live_prefix(nats_prefix: str) -> str:
    """A namespace of this module's own (removed with the run's: its streams share the prefix),
    so the compute test's reports and these never mix."""
    return f"{nats_prefix}.live"


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"GPS_DATASETS": GPS, "ENTERPRISE_DATASETS": FIRMS,
                       "POI_DATASETS": POIS, "VEHICLE_DATASETS": VEHICLES,
                       "TRIP_DATASETS": TRIPS, "ROAD_NETWORK": ROADS, "STAFF_DATASET": STAFF,
                       "BATCH": "16"}.items():
        monkeypatch.setenv(f"CITYOS_HAZCHEM_{key}", value)
    monkeypatch.delenv("CITYOS_CLIENT_ID", raising=False)


def hazchem_app(make_settings: Any, nats_prefix: str, issuer: Any,  # noqa: F811
                st: Any) -> Any:  # noqa: F811
    async def upstream(method: str, path: str, body: Any, params: dict[str, str] | None,
                       token: str | None) -> Any:
        # The live consumer has no caller's token: the test's issuer stands in for hazchem's
        # service credentials.
        token = token or issuer.token(scopes=("stquery:read",))
        r = await st.request(method, path, json=body, params=params,
                             headers={"Authorization": f"Bearer {token}"})
        if r.status_code >= 400:  # as the HTTP upstream reports it
            raise HTTPException(status_code=502, detail=f"{path}: {r.status_code} {r.text}")
        return r.json()

    settings = replace(make_settings("hazchem"), nats_prefix=nats_prefix)
    return build_app(settings, auth=AuthPlugin(settings, verifier=issuer.verifier()),
                     upstream=upstream)


async def test_stays_match_the_spatiotemporal_service() -> None:
    sc = scenario.generate(copies=2, seed=11)
    th = Thresholds()
    cleaned = [rules.clean(t, th) for t in sc.tracks]
    ours = stays.concat([stays.detect(t, replace(stays.COMPUTE, include_last=False))
                         for t in cleaned])
    theirs = closed_stays(cleaned)
    assert len(ours) > 20
    for f in ("vehicle", "arrival", "departure"):
        assert np.array_equal(getattr(ours, f), getattr(theirs, f)), f
    assert np.allclose(ours.lon, theirs.lon) and np.allclose(ours.lat, theirs.lat)


def test_stays_walked_incrementally_match_a_whole_walk() -> None:
    """Live windows grow a few fixes at a time: the stays walked again only from the last run
    start before the change are those of walking the whole window."""
    sc = scenario.generate(copies=1, seed=5)
    checked = 0
    for tr in sc.tracks:
        c = rules.clean(tr, Thresholds())
        walk, prev = stays.Walk(), 0
        for k in [*range(7, len(c.t), 37), len(c.t)]:
            got = walk.update(Track(c.vehicle, c.t[:k], c.lon[:k], c.lat[:k]),
                              float(c.t[max(0, prev - 2)]))
            want = stays.detect(Track(c.vehicle, c.t[:k], c.lon[:k], c.lat[:k]))
            for f in ("arrival", "departure", "lon", "lat"):
                assert np.allclose(getattr(got, f), getattr(want, f)), (c.vehicle, k, f)
            checked += len(want)
            prev = k
    assert checked > 100


def test_place_warnings_are_named_alike_in_any_window() -> None:
    """A place warning's key names the place and its period, not the window it was seen in: the
    stays cut into 6-h windows give the licence anomalies of the whole day, and the suspected
    sites of the stays fed one at a time are those of all at once; a week later is another
    period."""
    sc = scenario.generate(copies=2, seed=5)
    th = Thresholds()
    cleaned = [rules.clean(t, th) for t in sc.tracks]
    found = closed_stays(cleaned)
    whole = rules.detect_all(cleaned, sc.licensed, found, sc.enterprises, sc.pois, th)
    want = {idempotency_key(w) for w in whole if w.kind in rules.PLACE_KINDS}
    assert Counter(k.split(":")[1] for k in want) == {rules.LICENCE: 6, rules.BLACK_SITE: 2}
    got = set()
    for a in np.arange(found.arrival.min(), found.arrival.max() + 1, 6 * 3600.0):
        m = (found.arrival >= a) & (found.arrival < a + 6 * 3600.0)
        part = rules.Stays(found.vehicle[m], found.arrival[m], found.departure[m], found.lon[m],
                           found.lat[m])
        got |= {idempotency_key(w) for w in rules.licence_anomaly(part, sc.enterprises, th)}
    nothing = sorted((w for w in whole if w.kind == rules.NOTHING_STAY), key=lambda w: w.start)
    for k in range(len(nothing)):
        got |= {idempotency_key(w) for w in rules.black_sites(nothing[:k + 1], th)}
    assert got == want
    later = [replace(w, start=w.start + WEEK, end=w.end + WEEK) for w in nothing]
    assert {idempotency_key(w) for w in rules.black_sites(nothing + later, th)} == \
        {k for k in want if rules.BLACK_SITE in k} | {
            idempotency_key(w) for w in rules.black_sites(later, th)}
    assert len(rules.black_sites(nothing + later, th)) == 4


def test_live_forgets_past_trips_and_periods() -> None:
    """Declared trips that ended before the live windows are dropped from the registry; the
    nothing-registered stays kept for suspected sites are those of the current and previous
    place period."""
    def trip(name: str, end: float) -> Trip:
        return Trip(name, "V", end - 3600, end, np.zeros(2), np.zeros(2))

    reg = Registered(rules.Places.empty(), rules.Places.empty(), {},
                     rules.trips_by_vehicle([trip("T1", 100.0), trip("T2", 5000.0)]))
    assert [t.trip_id for t in reg.trips_after(1000.0).trips["V"]] == ["T2"]
    assert reg.trips_after(6000.0).trips == {}
    th = Thresholds()
    memory = PlaceMemory()
    day0 = scenario.DAY.timestamp() + 10 * 3600
    for week in (0, 1, 2):
        for k in range(3):  # a site each week: 3 vehicles on 3 days
            t = day0 + week * WEEK + k * 86400
            memory.stay(rules.Warning(rules.NOTHING_STAY, f"V{k}", t, t + 2400, *scenario.ORIGIN, 1))
    sites = memory.sites(th)
    assert len(sites) == 2 and memory.sites(th) == []  # nothing changed since
    assert sorted(w.start for kept in memory.nothing.values() for w in kept)[0] == day0 + WEEK
    # The same stay seen again, grown: no change, no new site.
    memory.stay(rules.Warning(rules.NOTHING_STAY, "V0", day0 + 2 * WEEK, day0 + 2 * WEEK + 3600,
                              *scenario.ORIGIN, 1))
    assert memory.sites(th) == []


async def test_live_warnings_once_across_a_restart(
        live_env: None, planted: scenario.Scenario, make_settings: Any, issuer: Any,  # noqa: F811
        st: Any, live_prefix: str) -> None:  # noqa: F811
    nats_prefix = live_prefix
    bus = Bus(replace(make_settings("hazchem-test"), nats_prefix=nats_prefix))
    await bus.connect()
    batches = arrivals(planted)
    # The restart comes half-way through the route deviation (and most of the day).
    half = mid_deviation(planted, batches)

    async def publish(part: list[ObservationBatch]) -> None:
        for b in part:
            await bus.publish(f"obs.{GPS}", b, msg_id=b.batch_id)

    # First half, then the consumer stops (its state gone) and a new one goes on.
    async with AsyncTestClient(hazchem_app(make_settings, nats_prefix, issuer, st), timeout=120) as client:
        await publish(batches[:half])
        await eventually(lambda: _caught_up(bus), timeout=120)
        first = await hazchem_reports(bus)
        assert any(r["idempotency_key"].split(":")[1] in CORE for r in first), \
            "warnings already in the first half of the day"
        assert [r["source_ref"] for r in first
                if r["source_ref"].startswith("hazchem/route_deviation/")] == \
            ["hazchem/route_deviation/L-ROUTE-0"], "the deviation warned before the restart"
        assert client.app.state.live[0].posted == len(first)
    async with AsyncTestClient(hazchem_app(make_settings, nats_prefix, issuer, st), timeout=120) as client:
        lw = client.app.state.live[0]
        # Rebuilt from the stream: every vehicle of the first half, with all its fixes.
        assert set(lw.windows) == {v for b in batches[:half] for v in b.subject}
        assert lw.history_complete  # the stream still holds the whole day
        assert lw.posted == 0
        await publish(batches[half:])
        await publish(batches[half - 5:half + 5])  # a gateway re-sending: duplicates
        await eventually(lambda: _caught_up(bus), timeout=120)
        await asyncio.sleep(1.0)

    reports = await hazchem_reports(bus)
    keys = [r["idempotency_key"] for r in reports]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(3)
    assert all(r["channel"] == "system" and r["category"] == "0803" for r in reports)
    got = Counter((k.split(":")[2], k.split(":")[1]) for k in keys
                  if k.split(":")[1] in CORE)
    # The planted warnings, each once; the look-alikes and the noise raise nothing.
    want = {(v, k) for v, kinds in planted.truth.items() for k in kinds if k in CORE}
    assert set(got) == want
    # Route deviation: the 3 km one once, not the 300 m detour nor the 2-min excursion; with
    # where to intercept it (its 5-minute reachable area's edge, the nearest traffic police).
    assert [v for v, k in got.elements() if k == rules.ROUTE_DEVIATION] == ["L-ROUTE-0"]
    deviation = next(r for r in reports if r["source_ref"] == "hazchem/route_deviation/L-ROUTE-0")
    assert "5分钟可达范围边缘路口" in deviation["text"], deviation["text"]
    assert "最近执勤交警 P-JJ1" in deviation["text"], deviation["text"]
    # The same warnings (same keys) as re-computing the whole day from the stored fixes.
    recomputed = evaluate.run(planted, closed_stays)
    assert sorted(k for k in keys if k.split(":")[1] in CORE) == sorted(
        f"hazchem:{w.kind}:{w.vehicle}:{int(w.start)}" for w in recomputed if w.kind in CORE)
    # Place warnings too: each enterprise and site once for its period, though live saw them in
    # many windows (the site's visits span 5 days and the restart), as the whole day names them.
    places = sorted(k for k in keys if k.split(":")[1] in rules.PLACE_KINDS)
    assert places == sorted(idempotency_key(w) for w in recomputed
                            if w.kind in rules.PLACE_KINDS)
    assert Counter(k.split(":")[1] for k in places) == {rules.LICENCE: 3, rules.BLACK_SITE: 1}
    await bus.close()


async def test_a_first_start_reads_back_only_the_window(
        monkeypatch: pytest.MonkeyPatch, make_settings: Any, issuer: Any,  # noqa: F811
        st: Any, live_prefix: str) -> None:  # noqa: F811
    """No durable yet: the consumer starts `window_h` back by stored time (here 3.6 s), not at
    the stream's beginning, and knows the history before that is missing."""
    prefix, gps = f"{live_prefix}.first", "first_gps"
    monkeypatch.setenv("CITYOS_HAZCHEM_GPS_DATASETS", gps)
    monkeypatch.setenv("CITYOS_HAZCHEM_WINDOW_H", "0.001")
    monkeypatch.delenv("CITYOS_CLIENT_ID", raising=False)
    bus = Bus(replace(make_settings("hazchem-test"), nats_prefix=prefix))
    await bus.connect()
    await bus.ensure_streams(STREAMS)

    async def publish(name: str, vehicle: str) -> None:
        await bus.publish(f"obs.{gps}", ObservationBatch(
            batch_id=name, dataset=gps, version=1, owner="JTJ", subject=[vehicle],
            ts=[datetime.now(UTC)], lon=[scenario.ORIGIN[0]], lat=[scenario.ORIGIN[1]]),
            msg_id=name)

    await publish("before", "OLD-1")
    await asyncio.sleep(5.0)
    async with AsyncTestClient(hazchem_app(make_settings, prefix, issuer, st), timeout=60) as client:
        await publish("after", "NEW-1")
        await eventually(lambda: _caught_up(bus, f"hazchem-live-{gps}"), timeout=30)
        lw = client.app.state.live[0]
        assert set(lw.windows) == {"NEW-1"}
        assert not lw.history_complete
    await bus.close()
