"""The risk index: the model alone (a planted high-risk cell ranks first, contributions add up
to the score, weights steer the ranking), then the service end to end: inputs planted in the
spatio-temporal store, the event hub and hazchem's own warnings, `POST /risk/compute` reading
them through the public APIs, `GET /risk` as GeoJSON, and the daily run computing a day once."""

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import h3
import numpy as np
import pytest
from data_platform.conftest import eventually, ingestion, issuer, spatiotemporal  # noqa: F401
from litestar.exceptions import HTTPException
from litestar.testing import AsyncTestClient
from stquery.conftest import entity, st, store, write_entities, write_fixes  # noqa: F401

from cityos_events.app import build_app as build_events
from cityos_events.config import EventsSettings
from cityos_hazchem import population, risk
from cityos_hazchem.app import build_app
from cityos_hazchem.risk import FACTORS, Points, RiskSettings
from cityos_hazchem.risk_api import DailyRisk, RiskService, hub_upstream
from cityos_kit.auth import AuthPlugin
from cityos_kit.city import City
from cityos_kit.config import DEFAULT_CITY_DIR

LOCAL = timezone(timedelta(hours=8))
DAY = date(2026, 3, 10)  # far from the warnings tests' day: their warnings stay out of windows
# The planted high-risk spot: the centre of an H3 cell (resolution 8) in the old town.
P = tuple(reversed(h3.cell_to_latlng(h3.latlng_to_cell(32.023, 120.872, 8))))
WEIGHTS = RiskSettings().weights()


def _rng() -> np.random.Generator:
    return np.random.default_rng(11)


def _city_points(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng()
    return rng.uniform(120.71, 121.09, n), rng.uniform(31.91, 32.14, n)


# -- the model -------------------------------------------------------------------------------


def _planted_inputs() -> tuple[dict[str, float], dict[str, Points]]:
    """Background everywhere, and a bit more of every factor at P."""
    lon, lat = _city_points(400)
    rng = _rng()
    cells = risk.cells_of(lon, lat, 8)
    traffic = {str(c): float(v) for c, v in zip(cells, rng.uniform(0.1, 3.0, 400), strict=True)}
    traffic[h3.latlng_to_cell(P[1], P[0], 8)] = 10.0

    def with_p(amounts: np.ndarray, extra: float) -> Points:
        return Points(np.append(lon, P[0]), np.append(lat, P[1]), np.append(amounts, extra))

    return traffic, {"enterprises": with_p(rng.uniform(1, 1.5, 400), 6.0),
                     "warnings": with_p(np.ones(400), 4.0),
                     "population": with_p(rng.uniform(200, 2000, 400), 8000.0),
                     "incidents": with_p(np.ones(400), 3.0)}


def test_a_planted_high_risk_cell_ranks_first() -> None:
    traffic, points = _planted_inputs()
    cells, raw = risk.cell_raw(traffic, points, 8)
    b = risk.score(cells, raw, WEIGHTS)
    first, second = (int(i) for i in b.order()[:2])
    assert b.areas[first] == h3.latlng_to_cell(P[1], P[0], 8)
    assert b.score[first] > b.score[second] + 5  # clearly, not by a rounding error


def test_each_factors_contribution_adds_up_to_the_score() -> None:
    traffic, points = _planted_inputs()
    cells, raw = risk.cell_raw(traffic, points, 8)
    b = risk.score(cells, raw, {"traffic": 3, "enterprises": 1, "warnings": 0, "population": 2,
                                "incidents": 1}, 0.9)
    assert np.allclose(b.contribution.sum(axis=1), b.score)
    assert ((b.normalised >= 0) & (b.normalised <= 1)).all()
    assert (b.score >= 0).all() and (b.score <= 100 + 1e-9).all()
    assert (b.contribution[:, FACTORS.index("warnings")] == 0).all()  # weight 0 counts nothing
    i = int(b.order()[0])
    listed = b.factors(i)
    assert [f["name"] for f in listed] == list(FACTORS)
    assert sum(float(f["contribution"]) for f in listed) == pytest.approx(b.score[i])
    k = FACTORS.index("population")
    assert listed[k]["raw"] == raw["population"][i]
    assert listed[k]["contribution"] == pytest.approx(
        100 * 2 * b.normalised[i, k] / 7)  # 100 × weight × normalised / Σ weights


def test_changing_a_weight_changes_the_ranking() -> None:
    """Area `busy` has the traffic, area `crowded` the people: the heavier factor wins."""
    areas = ["busy", "crowded", "quiet"]
    raw = {f: np.zeros(3) for f in FACTORS}
    raw["traffic"] = np.array([50.0, 5.0, 1.0])
    raw["population"] = np.array([100.0, 9000.0, 50.0])
    traffic_first = risk.score(areas, raw, {**WEIGHTS, "traffic": 40, "population": 10}, 1.0)
    people_first = risk.score(areas, raw, {**WEIGHTS, "traffic": 10, "population": 40}, 1.0)
    assert [areas[i] for i in traffic_first.order()] == ["busy", "crowded", "quiet"]
    assert [areas[i] for i in people_first.order()] == ["crowded", "busy", "quiet"]


def test_normalising_saturates_so_one_outlier_does_not_flatten_the_rest() -> None:
    raw = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 1000.0])
    n, scale = risk.normalise(raw, 0.5)
    assert scale == 3.0  # the median of the areas where the factor is present
    assert n[0] == 0.0 and n[3] == 0.5 and n[4] == pytest.approx(4 / 7)
    assert (np.diff(n) > 0).all() and n[5] < 1.0  # every step up still ranks higher
    assert risk.normalise(np.zeros(3), 0.5)[1] == 0.0  # a factor absent everywhere


def test_closed_suspended_and_expired_enterprises_weigh_more() -> None:
    s = RiskSettings()
    w = risk.enterprise_weights(
        np.array(["user", "user", "user", "producer", "user", "mystery"]),
        np.array(["operating", "suspended", "closed", "operating", "operating", "operating"]),
        [None, None, None, None, date(2026, 1, 1), date(2027, 1, 1)], DAY, s)
    assert w.tolist() == [1.0, 2.0, 2.5, 1.5, 3.0, 1.0]


def test_streets_are_compared_by_density() -> None:
    city = City(DEFAULT_CITY_DIR)
    cell_street = risk.street_cells(city.divisions, 8)
    streets = sorted(set(cell_street.values()))
    assert len(streets) == 12
    a, b = streets[0], streets[1]
    cell_a = next(c for c, s in cell_street.items() if s == a)
    cells = [cell_a, next(c for c, s in cell_street.items() if s == b), "8830000000fffff"]
    raw = {f: np.array([10.0, 0.0, 99.0]) for f in FACTORS}
    dens = risk.street_raw(cells, raw, cell_street, streets)
    area_a = sum(h3.cell_area(c, "km^2") for c, s in cell_street.items() if s == a)
    assert dens["traffic"][0] == pytest.approx(10.0 / area_a)
    assert dens["traffic"][1:].sum() == 0.0  # the cell outside every street counts for none


def test_the_demo_population_layer_covers_every_street() -> None:
    rows = population.generate(City(DEFAULT_CITY_DIR).divisions)
    assert len({r["street"] for r in rows}) == 12
    people = np.array([r["population"] for r in rows])
    assert 1_000_000 < people.sum() < 3_000_000 and people.min() > 0
    near = min(rows, key=lambda r: (r["lon"] - P[0]) ** 2 + (r["lat"] - P[1]) ** 2)
    assert near["population"] > np.quantile(people, 0.9)  # the old town is dense


def test_a_city_tunes_the_model_through_its_environment() -> None:
    s = RiskSettings.from_env({"CITYOS_HAZCHEM_RISK_WEIGHT_TRAFFIC": "60",
                               "CITYOS_HAZCHEM_RISK_H3_RESOLUTION": "7",
                               "CITYOS_HAZCHEM_RISK_KIND_WEIGHTS": "producer=3",
                               "CITYOS_HAZCHEM_GPS_DATASETS": "hz_gps,hz_gps_2"})
    s.check()
    assert s.weights()["traffic"] == 60.0 and s.h3_resolution == 7
    assert s.gps_datasets == "hz_gps,hz_gps_2"  # the live warnings' datasets by default
    assert risk.enterprise_weights(["producer"], ["operating"], [None], DAY, s).tolist() == [3.0]
    for bad in ({"CITYOS_HAZCHEM_RISK_WEIGHT_TRAFFIC": "-1"},
                {"CITYOS_HAZCHEM_RISK_H3_RESOLUTION": "12"},
                {"CITYOS_HAZCHEM_RISK_STATUS_WEIGHTS": "closed"},
                {"CITYOS_HAZCHEM_RISK_DAILY_AT": "25:00"}):
        with pytest.raises(ValueError):
            RiskSettings.from_env(bad).check()


async def test_an_unreachable_event_hub_is_a_502_naming_it() -> None:
    with pytest.raises(HTTPException) as caught:
        await hub_upstream("http://127.0.0.1:9")("GET", "/cases", None, {}, None)  # discard port
    assert caught.value.status_code == 502 and "event hub" in caught.value.detail


# -- the service -----------------------------------------------------------------------------


SETTINGS = RiskSettings(gps_datasets="rk_gps", enterprise_datasets="rk_firms",
                        population_dataset="rk_pop", daily=False)
P_CELL = h3.latlng_to_cell(P[1], P[0], SETTINGS.h3_resolution)


def _local(d: date, hour: float) -> datetime:
    return datetime.combine(d, time(0), LOCAL) + timedelta(hours=hour)


@pytest.fixture(scope="module")
async def planted(st: Any, store: Any) -> dict[str, Any]:  # noqa: F811
    rng = _rng()
    rows = [("RK-P", _local(DAY, 8 + i / 60), P[0] + rng.normal(0, 0.0003),
             P[1] + rng.normal(0, 0.0003)) for i in range(600)]  # 5 h around P
    lon, lat = _city_points(30)
    rows += [(f"RK-{v}", _local(DAY, 9 + i / 60), float(lon[v]) + i * 1e-4, float(lat[v]))
             for v in range(30) for i in range(60)]
    await write_fixes(store, "rk_gps", rows)
    firms = [entity("F-P1", *P, category="producer", status="closed"),
             entity("F-P2", *P, category="storage", status="operating",
                    licence_valid_until="2025-12-31")]
    firms += [entity(f"F-{i}", float(lon[i]), float(lat[i]), category="user", status="operating",
                     licence_valid_until="2030-01-01") for i in range(20)]
    await write_entities(store, "rk_firms", firms)
    layer = population.generate(City(DEFAULT_CITY_DIR).divisions)
    await write_entities(store, "rk_pop", [
        entity(r["cell"], r["lon"], r["lat"], population=r["population"]) for r in layer])
    return {"fixes": len(rows), "firms": len(firms), "people": len(layer)}


def _via(client: Any) -> Any:
    async def call(method: str, path: str, body: Any, params: dict[str, str] | None,
                   token: str | None) -> Any:
        r = await client.request(method, path, json=body, params=params,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
        assert r.status_code < 400, (path, r.text)
        return r.json()
    return call


@pytest.fixture(scope="module")
async def hub(make_settings: Any, issuer: Any) -> Any:  # noqa: F811
    settings = make_settings("events")
    app = build_events(settings, auth=AuthPlugin(settings, verifier=issuer.verifier(),
                                                 rate_limit_per_minute=1_000_000),
                       events_settings=EventsSettings())
    async with AsyncTestClient(app, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def hazchem(make_settings: Any, issuer: Any, st: Any, hub: Any,  # noqa: F811
                  planted: dict[str, Any]) -> Any:
    settings = make_settings("hazchem")
    app = build_app(settings, auth=AuthPlugin(settings, verifier=issuer.verifier()),
                    upstream=_via(st), risk=SETTINGS, hub=_via(hub))
    async with AsyncTestClient(app, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
async def pool(hazchem: Any, database_url: str) -> Any:
    """hazchem's schema from this loop (the app's own pool lives in the test client's loop)."""
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=2,
                                  server_settings={"search_path": "hazchem,public"})
    yield p
    await p.close()


def _headers(issuer: Any, *scopes: str) -> dict[str, str]:  # noqa: F811
    return {"Authorization": f"Bearer {issuer.token(scopes=scopes)}"}


READER = ("hazchem:read", "stquery:read", "cases:read")


async def _plant_warnings_and_incidents(pool: asyncpg.Pool, hub: Any,
                                        issuer: Any) -> None:  # noqa: F811
    started = _local(DAY, -48)
    await pool.executemany(
        "INSERT INTO posted_warnings (key, kind, vehicle, lon, lat, starts_at, ends_at)"
        " VALUES ($1, 'closed_enterprise_stay', $2, $3, $4, $5::timestamptz,"
        " $5::timestamptz + interval '1 hour')"
        " ON CONFLICT DO NOTHING",
        [(f"rk:{i}", f"RK-{i}", P[0], P[1], started + timedelta(hours=i))
         for i in range(3)] + [("rk:old", "RK-9", P[0], P[1], started - timedelta(days=40))])
    reporter = _headers(issuer, "cases:report")
    for channel, category, (x, y) in (("citizen_app", "0801", P),
                                      ("system", "0803", (P[0], P[1] + 0.0005)),
                                      ("hotline_12345", "0801", (121.05, 31.93))):
        r = await hub.post("/reports", headers=reporter, json={
            "channel": channel, "text": "化工厂附近闻到刺鼻气味，疑似泄漏", "lon": x, "lat": y,
            "category": category, "reported_at": _local(DAY, -24 * 30).isoformat()})
        assert r.status_code == 201, r.text


async def test_compute_and_read_the_index(hazchem: Any, hub: Any, issuer: Any,  # noqa: F811
                                          pool: asyncpg.Pool, planted: dict[str, Any]) -> None:
    await _plant_warnings_and_incidents(pool, hub, issuer)
    r = await hazchem.post("/risk/compute", json={"day": DAY.isoformat()},
                           headers=_headers(issuer, *READER))
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["trigger"] == "request" and run["day"] == DAY.isoformat()
    assert run["read"] == {"fixes": planted["fixes"], "enterprises": planted["firms"],
                           "population": planted["people"], "warnings": 3, "incidents": 2}
    top = run["top"][0]
    assert (top["area"], top["rank"]) == (P_CELL, 1)
    by_name = {f["name"]: f for f in top["factors"]}
    assert by_name["warnings"]["raw"] == 3.0  # the 40-day-old one is outside the window
    assert by_name["incidents"]["raw"] == 1.0  # the system-channel case is a warning, not this
    assert by_name["enterprises"]["raw"] == 1.5 * 2.5 + 1.5 * 3.0  # closed producer, expired store
    assert by_name["traffic"]["raw"] == pytest.approx(600 * SETTINGS.fix_interval_s / 3600)
    assert sum(f["contribution"] for f in top["factors"]) == pytest.approx(top["score"])

    got = await hazchem.get("/risk", params={"top": 3}, headers=_headers(issuer, "hazchem:read"))
    assert got.status_code == 200, got.text
    fc = got.json()
    assert fc["type"] == "FeatureCollection" and fc["day"] == DAY.isoformat()
    assert [f["properties"]["rank"] for f in fc["features"]] == [1, 2, 3]
    first = fc["features"][0]
    assert first["properties"]["area"] == P_CELL
    assert first["geometry"]["type"] == "Polygon"
    assert h3.latlng_to_cell(*reversed(first["geometry"]["coordinates"][0][0]), 8) in (
        {P_CELL} | set(h3.grid_disk(P_CELL, 1)))
    assert fc["weights"] == SETTINGS.weights()
    assert set(fc["scales"]) == set(FACTORS) and fc["units"]["traffic"] == "vehicle-hours"
    assert {f["name"] for f in first["properties"]["factors"]} == set(FACTORS)
    scores = [f["properties"]["score"] for f in fc["features"]]
    assert scores == sorted(scores, reverse=True)

    streets = await hazchem.get("/risk", params={"level": "street", "day": DAY.isoformat()},
                                headers=_headers(issuer, "hazchem:read"))
    assert streets.status_code == 200, streets.text
    sf = streets.json()["features"]
    assert len(sf) == 12 and sf[0]["properties"]["area"] == first["properties"]["street"]
    assert sf[0]["properties"]["name"] and sf[0]["geometry"]["type"] == "Polygon"
    assert streets.json()["units"]["population"] == "residents per km²"
    assert streets.json()["scales"]["population"] > 0 and streets.json()["scales"] != fc["scales"]


async def test_recompute_replaces_the_day(hazchem: Any, issuer: Any,  # noqa: F811
                                          pool: asyncpg.Pool) -> None:
    for _ in range(2):
        r = await hazchem.post("/risk/compute", json={"day": DAY.isoformat()},
                               headers=_headers(issuer, *READER))
        assert r.status_code == 200, r.text
    n = await pool.fetchval("SELECT count(*) FROM risk_areas WHERE day = $1 AND level = 'cell'",
                            DAY)
    assert n == r.json()["cells"]


async def test_reading_needs_the_hazchem_scope_and_days_must_have_begun(hazchem: Any, issuer: Any) -> None:  # noqa: F811
    r = await hazchem.get("/risk", headers=_headers(issuer, "stquery:read", "cases:read"))
    assert r.status_code == 403, r.text
    r = await hazchem.post("/risk/compute", json={}, headers=_headers(issuer, "stquery:read"))
    assert r.status_code == 403, r.text
    future = await hazchem.post("/risk/compute", json={"day": "2099-01-01"},
                                headers=_headers(issuer, *READER))
    assert future.status_code == 400 and "not begun" in future.text
    missing = await hazchem.get("/risk", params={"day": "2001-01-01"},
                                headers=_headers(issuer, "hazchem:read"))
    assert missing.status_code == 404, missing.text


async def test_the_daily_run_computes_a_day_once(hazchem: Any, issuer: Any,  # noqa: F811
                                                 pool: asyncpg.Pool) -> None:
    svc: RiskService = replace(hazchem.app.state.risk, pool=pool)  # the app's, on this loop
    calls: list[int] = []

    async def token() -> str:
        calls.append(1)
        return issuer.token(scopes=READER)

    day = DAY + timedelta(days=1)
    await svc.pool.execute("DELETE FROM risk_runs WHERE day > $1", DAY)
    if not await svc.pool.fetchval("SELECT EXISTS (SELECT 1 FROM risk_runs WHERE day = $1)", DAY):
        await svc.compute(DAY, issuer.token(scopes=READER), "request")
    now = _local(day + timedelta(days=1), 2.0)  # 02:00 the day after: yesterday is due
    (run,) = await DailyRisk(svc, token).tick(now.astimezone(UTC))
    assert run.day == day and run.trigger == "daily"
    assert run.top[0].area == P_CELL  # its traffic window still holds DAY's fixes
    stored = await svc.pool.fetchrow("SELECT trigger, computed_at FROM risk_runs WHERE day = $1",
                                     day)
    assert stored["trigger"] == "daily"
    # The next tick, and a restarted service, leave the computed day alone.
    assert await DailyRisk(svc, token).tick(now + timedelta(hours=3)) == []
    assert await DailyRisk(svc, token).tick(now) == []
    # Before 01:00 the day before yesterday is the due one: DAY, computed on request.
    assert DailyRisk(svc, token).due_day(_local(day + timedelta(days=1), 0.5)) == DAY
    assert await DailyRisk(svc, token).tick(_local(day + timedelta(days=1), 0.5)) == []
    assert len(calls) == 1
    assert await svc.pool.fetchval("SELECT computed_at FROM risk_runs WHERE day = $1",
                                   day) == stored["computed_at"]


async def test_the_daily_run_catches_up_every_missed_day(hazchem: Any, issuer: Any,  # noqa: F811
                                                         pool: asyncpg.Pool) -> None:
    """Down for days: each day since the last run, newest first, once; at most
    `catch_up_days` of them."""
    svc: RiskService = replace(hazchem.app.state.risk, pool=pool)

    async def token() -> str:
        return issuer.token(scopes=READER)

    await svc.pool.execute("DELETE FROM risk_runs WHERE day > $1", DAY)
    if not await svc.pool.fetchval("SELECT EXISTS (SELECT 1 FROM risk_runs WHERE day = $1)", DAY):
        await svc.compute(DAY, await token(), "request")
    back = _local(DAY + timedelta(days=4), 2.0)  # DAY + 1 .. DAY + 3 missed
    bounded = replace(svc, settings=replace(svc.settings, catch_up_days=2))
    runs = await DailyRisk(bounded, token).tick(back)
    assert [r.day for r in runs] == [DAY + timedelta(days=3), DAY + timedelta(days=2)]
    await svc.pool.execute("DELETE FROM risk_runs WHERE day > $1", DAY)
    runs = await DailyRisk(svc, token).tick(back)
    assert [r.day for r in runs] == [DAY + timedelta(days=k) for k in (3, 2, 1)]
    assert all(r.trigger == "daily" for r in runs)
    assert await DailyRisk(svc, token).tick(back) == []
    assert await svc.pool.fetchval("SELECT count(*) FROM risk_runs WHERE day > $1", DAY) == 3


async def test_the_population_layer_loads_through_ingestion(ingestion: Any, st: Any) -> None:  # noqa: F811
    """How a city loads its own layer: register the dataset, push the CSV; the index then reads
    it from the spatio-temporal entity listing."""
    data = Path(population.__file__).parent / "data"
    r = await ingestion.post("/datasets", content=(data / "population_dataset.json").read_bytes(),
                             headers={"content-type": "application/json"})
    assert r.status_code in (200, 201), r.text
    csv_body = (data / "population_demo.csv").read_bytes()
    rows = csv_body.decode().count("\n") - 1
    pushed = await ingestion.post("/datasets/population/records", content=csv_body,
                                  headers={"content-type": "text/csv"})
    assert pushed.status_code == 200, pushed.text
    assert (pushed.json()["accepted"], pushed.json()["rejected"]) == (rows, 0)

    async def listed() -> list[Any]:
        fc = (await st.get("/datasets/population/entities",
                           params={"at": _local(DAY, 24).isoformat(), "limit": 10000})).json()
        return fc["features"] if len(fc["features"]) == rows else []

    features = await eventually(listed, timeout=60)
    assert sum(f["properties"]["attrs"]["population"] for f in features) == sum(
        r["population"] for r in population.generate(City(DEFAULT_CITY_DIR).divisions))
