"""The hazchem service end to end: the planted scenario written to the spatio-temporal store
(fixes, enterprises with their licences, POIs, vehicles, declared trips, a road grid and traffic
police positions), `POST /warnings/compute` reading it back through the spatio-temporal HTTP API
(as the caller), the warnings matching the ground truth, each route deviation carrying its
5-minute reachable area and the nearest on-duty traffic police, and each new warning posted once
on `reports.system`."""

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from data_platform.conftest import issuer, spatiotemporal  # noqa: F401
from hazchem.interception import OLD, road_grid, write_officers
from hazchem.posted import hazchem_reports
from litestar.exceptions import HTTPException
from litestar.testing import AsyncTestClient
from shapely.geometry import Point, shape
from stquery.conftest import entity, st, store, write_entities, write_fixes  # noqa: F401

from cityos_contracts.records import Entity
from cityos_hazchem import evaluate, rules, scenario
from cityos_hazchem.app import _yes, build_app
from cityos_hazchem.intercept import Interception, intercept
from cityos_hazchem.reports import to_report
from cityos_kit.auth import AuthPlugin
from cityos_kit.bus import Bus

GPS, FIRMS, POIS = "hz_gps", "hz_firms", "hz_pois"
VEHICLES, TRIPS, ROADS, STAFF = "hz_vehicles", "hz_trips", "hz_roads", "hz_staff"
LOCAL = scenario.LOCAL


def _day(until: float) -> str:
    """The scenario's licence end (the end of a local day) as the registered date."""
    return datetime.fromtimestamp(until - 1, LOCAL).date().isoformat()


@pytest.fixture(scope="module")
async def planted(st: Any, store: Any) -> scenario.Scenario:  # noqa: F811
    sc = scenario.generate(copies=1)
    rows = [(tr.vehicle, datetime.fromtimestamp(float(t), UTC), float(x), float(y))
            for tr in sc.tracks for t, x, y in zip(tr.t, tr.lon, tr.lat, strict=True)
            if abs(x) > 1e-6 and -180 <= x <= 180 and -90 <= y <= 90]
    await write_fixes(store, GPS, rows)
    e = sc.enterprises
    assert e.credit_code is not None and e.licence_no is not None and e.licence_until is not None
    # The renewed licence has an expired state before the renewal: the state at the visit counts.
    renewed = int(np.flatnonzero(e.id == "E-RENEWED-0")[0])
    await write_entities(store, FIRMS, [entity(
        "E-RENEWED-0", float(e.lon[renewed]), float(e.lat[renewed]), category="user",
        valid_from=OLD, status="operating", credit_code=str(e.credit_code[renewed]),
        licence_no=str(e.licence_no[renewed]), licence_valid_until="2026-05-20")])
    await write_entities(store, FIRMS, [
        entity(str(e.id[i]), float(e.lon[i]), float(e.lat[i]), category=str(e.kind[i]),
               status=str(e.status[i]), credit_code=str(e.credit_code[i]),
               licence_no=str(e.licence_no[i]), licence_valid_until=_day(float(e.licence_until[i])),
               valid_from=datetime.fromtimestamp(float(e.status_since[i]), UTC)
               if e.status[i] != "operating" else
               datetime(2026, 5, 25, tzinfo=UTC) if i == renewed else OLD)
        for i in range(len(e))])
    await write_entities(store, VEHICLES, [
        Entity(entity_id=v, name=v, category="tanker", geometry=None, valid_from=OLD,
               attrs={"licensed": lic, "carrier": "南通危运"}) for v, lic in sc.licensed.items()])
    # Trips as LineStrings with start/end, one as waypoints for its local day.
    await write_entities(store, TRIPS, [
        Entity(entity_id=t.trip_id, name=None, category="trip", valid_from=OLD,
               geometry=None if t.vehicle == "DETOUR-0" else
               {"type": "LineString", "coordinates": np.column_stack((t.lon, t.lat)).tolist()},
               attrs={"vehicle": t.vehicle, **(
                   {"date": scenario.DAY.date().isoformat(),
                    "waypoints": np.column_stack((t.lon, t.lat)).tolist()}
                   if t.vehicle == "DETOUR-0" else
                   {"start": datetime.fromtimestamp(t.start, UTC).isoformat(),
                    "end": datetime.fromtimestamp(t.end, UTC).isoformat()})})
        for t in sc.trips])
    await write_entities(store, ROADS, road_grid())
    await write_officers(store, STAFF)
    p = sc.pois
    await write_entities(store, POIS, [entity(str(p.id[i]), float(p.lon[i]), float(p.lat[i]),
                                              category=str(p.kind[i])) for i in range(len(p))])
    return sc


@pytest.fixture(scope="module")
async def hazchem(make_settings: Any, issuer: Any, st: Any) -> Any:  # noqa: F811
    async def upstream(method: str, path: str, body: Any, params: dict[str, str] | None,
                       token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await st.request(method, path, json=body, params=params, headers=headers)
        if r.status_code >= 400:  # as the HTTP upstream reports it
            raise HTTPException(status_code=502, detail=f"{path}: {r.status_code} {r.text}")
        return r.json()

    settings = make_settings("hazchem")
    app = build_app(settings, auth=AuthPlugin(settings, verifier=issuer.verifier()),
                    upstream=upstream)
    async with AsyncTestClient(app, timeout=120) as client:
        yield client


def _headers(issuer: Any, *scopes: str) -> dict[str, str]:  # noqa: F811
    return {"Authorization": f"Bearer {issuer.token(scopes=scopes)}"}


async def _stored_reports(bus: Any) -> int:
    """Messages on this run's REPORTS stream (their content is checked against `ReportIn` in
    test_warnings_quality)."""
    info = await bus.js.stream_info(bus.settings.stream_prefix + "_REPORTS")
    return int(info.state.messages)


async def test_compute_matches_truth_and_posts_each_warning_once(
        hazchem: Any, planted: scenario.Scenario, issuer: Any,  # noqa: F811
        make_settings: Any) -> None:
    day = scenario.DAY
    body = {"dataset": GPS, "start": day.isoformat(),
            "end": (day + timedelta(days=6)).isoformat(), "enterprise_datasets": [FIRMS],
            "poi_datasets": [POIS], "vehicle_datasets": [VEHICLES], "trip_datasets": [TRIPS],
            "road_network": ROADS, "staff_dataset": STAFF}
    headers = _headers(issuer, "hazchem:read", "stquery:read")
    bus = Bus(make_settings("hazchem-test"))  # this loop's own connection, same namespace
    await bus.connect()
    before = await _stored_reports(bus)
    r = await hazchem.post("/warnings/compute", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    got = {(_subject(planted, w), w["kind"]) for w in out["warnings"]}
    want = {(v, k) for v, kinds in planted.truth.items() for k in kinds}
    assert got == want
    assert {k for _, k in got} == set(rules.KINDS)
    assert out["posted"] == len(out["warnings"])
    assert await _stored_reports(bus) == before + len(out["warnings"])
    # Re-computing the window posts nothing new.
    again = await hazchem.post("/warnings/compute", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["posted"] == 0
    assert len(again.json()["warnings"]) == len(out["warnings"])
    assert await _stored_reports(bus) == before + len(out["warnings"])
    reports = await hazchem_reports(bus)
    assert sorted(m["idempotency_key"] for m in reports) == sorted(w["key"] for w in out["warnings"])
    # A vehicle warning's key names its start; a place warning's, the start of its place period.
    assert all(w["key"] == f"hazchem:{w['kind']}:{w['subject']}:" + str(int(datetime.fromisoformat(
        w["evidence"]["period"] if w["kind"] in rules.PLACE_KINDS else w["start"]).timestamp()))
        for w in out["warnings"])
    assert all(m["channel"] == "system" and m["category"] == "0803" for m in reports)
    assert {m["source_ref"] for m in reports} == {
        f"hazchem/{w['kind']}/{w['subject']}" for w in out["warnings"]}
    deviation = next(m for m in reports if m["source_ref"] == "hazchem/route_deviation/ROUTE-0")
    assert "最近执勤交警 P-JJ1" in deviation["text"]
    await bus.close()


def _subject(sc: scenario.Scenario, w: dict[str, Any]) -> str:
    return evaluate.subject(sc, rules.Warning(
        w["kind"], w["vehicle"], 0.0, 0.0, w["lon"], w["lat"], w["severity"], w["evidence"]))


async def test_route_deviation_carries_the_reachable_area_and_nearest_police(
        hazchem: Any, planted: scenario.Scenario, issuer: Any) -> None:  # noqa: F811
    day = scenario.DAY
    r = await hazchem.post("/warnings/compute", json={
        "dataset": GPS, "start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat(),
        "trip_datasets": [TRIPS], "road_network": ROADS, "staff_dataset": STAFF,
        "post": False}, headers=_headers(issuer, "hazchem:read", "stquery:read"))
    assert r.status_code == 200, r.text
    devs = [w for w in r.json()["warnings"] if w["kind"] == rules.ROUTE_DEVIATION]
    assert [w["vehicle"] for w in devs] == ["ROUTE-0"]  # not the 300 m detour nor the excursion
    ev = devs[0]["evidence"]
    assert ev["max_distance_m"] == pytest.approx(3000, abs=60) and ev["returned"] is True
    area = shape(ev["reachable"]["area"])
    here = Point(devs[0]["lon"], devs[0]["lat"])
    assert area.distance(here) < 0.002  # around where the vehicle was (the road it is near)
    # 5 min at 36 km/h reach 3 km along the 1 km grid: the edge has intersections, each
    # reached within the budget and inside the area.
    cross = ev["reachable"]["intersections"]
    assert cross and all(0 < c["seconds"] <= 300 for c in cross)
    assert all(area.buffer(1e-6).contains(Point(c["lon"], c["lat"])) for c in cross)
    assert [p["id"] for p in ev["police"]] == ["P-JJ1", "P-JJ2"]
    # Without a road network or a staff dataset the warning still comes, with the reason.
    r = await hazchem.post("/warnings/compute", json={
        "dataset": GPS, "start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat(),
        "trip_datasets": [TRIPS], "road_network": "hz_no_roads", "staff_dataset": "hz_nobody",
        "post": False}, headers=_headers(issuer, "hazchem:read", "stquery:read"))
    ev = next(w for w in r.json()["warnings"] if w["kind"] == rules.ROUTE_DEVIATION)["evidence"]
    assert "error" in ev["reachable"] and "hz_nobody" in ev["police_error"]


async def test_vehicles_dataset_decides_licence_and_the_request_overrides(
        hazchem: Any, planted: scenario.Scenario, issuer: Any) -> None:  # noqa: F811
    day = scenario.DAY
    body = {"dataset": GPS, "start": day.isoformat(),
            "end": (day + timedelta(days=1)).isoformat(), "vehicle_datasets": [VEHICLES],
            "post": False}
    headers = _headers(issuer, "hazchem:read", "stquery:read")
    r = await hazchem.post("/warnings/compute", json=body, headers=headers)
    warned = {w["vehicle"] for w in r.json()["warnings"] if w["kind"] == rules.NON_OPERATING}
    assert warned == {"UNLIC-0"}
    r = await hazchem.post("/warnings/compute", json={**body, "unlicensed": ["FATIGUE-0"]},
                           headers=headers)
    warned = {w["vehicle"] for w in r.json()["warnings"] if w["kind"] == rules.NON_OPERATING}
    assert warned == {"UNLIC-0", "FATIGUE-0"}
    # A department's file may give the flag as text.
    assert [_yes(v) for v in (False, "false", "0", "否", True, "true", "是")] == \
        [False, False, False, False, True, True, True]


async def test_compute_needs_the_hazchem_scope(hazchem: Any, issuer: Any) -> None:  # noqa: F811
    r = await hazchem.post("/warnings/compute", json={
        "dataset": GPS, "start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"},
        headers=_headers(issuer, "stquery:read"))
    assert r.status_code == 403, r.text


async def test_a_deviation_goes_out_with_the_reason_when_interception_fails() -> None:
    """The spatio-temporal service unreachable (as live warnings may find it): the warning keeps
    its evidence, gains the reasons, and its case text says why there is no area."""
    async def down(method: str, path: str, body: Any, params: dict[str, str] | None,
                   token: str | None) -> Any:
        raise httpx.ConnectError(f"connection refused: {path}")

    w = rules.Warning(rules.ROUTE_DEVIATION, "V-1", 0.0, 600.0, *scenario.ORIGIN, severity=2,
                      evidence={"trip": "T-1"})
    got = await intercept(down, Interception("roads"), w, None)
    assert got.evidence["trip"] == "T-1"
    assert "/query/reachable" in got.evidence["reachable"]["error"]
    assert "/query/nearest" in got.evidence["police_error"]
    assert "可达范围未能计算" in to_report(got).text
    # A service too slow for a live warning: the reason, in time.
    async def slow(method: str, path: str, body: Any, params: dict[str, str] | None,
                   token: str | None) -> Any:
        await asyncio.sleep(30)

    t0 = time.monotonic()
    got = await intercept(slow, Interception("roads", timeout_s=0.2), w, None)
    assert time.monotonic() - t0 < 5
    assert got.evidence["reachable"]["error"] == got.evidence["police_error"] == "no answer in time"
    # Other kinds are not asked about.
    other = replace(w, kind=rules.FATIGUE)
    assert await intercept(down, Interception("roads"), other, None) is other
