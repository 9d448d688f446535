"""The hazchem service: `POST /warnings/compute` re-computes the warnings of a window.

It reads only the platform's public APIs, as the signed-in person (their bearer token is passed
on): fixes from the spatio-temporal range query, stay points from its stay-point query,
enterprises, POIs, vehicles (licensed to operate or not) and declared trips from its entity
listing; then runs the rules, adds to each route deviation the reachable area and the nearest
on-duty traffic police (the spatio-temporal reachable and nearest queries), and posts each new
warning to the event hub as a `system` report on `reports.system` (category 0803 危化品异常).
"""

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import msgspec
import numpy as np
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from msgspec import Meta, Struct

from cityos_hazchem import live, risk_api, rules
from cityos_hazchem.entities import listing
from cityos_hazchem.intercept import Interception, intercept
from cityos_hazchem.posting import post_warnings
from cityos_hazchem.reports import idempotency_key
from cityos_hazchem.risk import RiskSettings
from cityos_hazchem.rules import Places, Thresholds, Track, Trip
from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings

SCHEMA = "hazchem"
MIGRATIONS = Path(__file__).parent / "migrations"
MAX_PAGES = 5000
STAY_PIECE = timedelta(days=2)  # the stay-point query's longest window
STAY_OVERLAP = timedelta(hours=6)

# (method, path, json body or None, query params, bearer token) -> decoded JSON
Upstream = Callable[[str, str, Any, dict[str, str] | None, str | None], Awaitable[Any]]


class ComputeRequest(Struct, frozen=True, forbid_unknown_fields=True):
    dataset: str  # vehicle GPS fixes
    start: datetime
    end: datetime
    enterprise_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    poi_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    # Registered vehicles (entity id: the plate; attrs `licensed`, `carrier`) and declared
    # trips (attrs `vehicle`, `start`/`end` or a local `date`; a LineString or attrs `waypoints`).
    vehicle_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    trip_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    # Overrides the vehicles datasets: these plates are not licensed to operate.
    unlicensed: Annotated[list[str], Meta(max_length=100_000)] = msgspec.field(default_factory=list)
    # Route deviations: the road network of the reachable area, and who can intercept.
    road_network: str | None = None
    reach_minutes: Annotated[float, Meta(gt=0, le=30)] = 5.0
    staff_dataset: str = "field_staff"
    police_unit: str = "JJZD"  # 公安局交通警察支队
    post: bool = True  # post new warnings to the event hub
    bbox: Annotated[list[float], Meta(min_length=4, max_length=4)] | None = None  # default: the city


class WarningOut(Struct, frozen=True):
    kind: str
    vehicle: str
    subject: str  # the vehicle, or the enterprise / suspected site of a place warning
    start: datetime
    end: datetime
    lon: float
    lat: float
    severity: int
    evidence: dict[str, Any]
    # The report's idempotency key: the same warning has it in every window and live.
    key: str = ""


class ComputeResult(Struct, frozen=True):
    warnings: list[WarningOut]
    fixes: int
    stays: int
    posted: int


def http_upstream(base_url: str, timeout_s: float = 60.0) -> Upstream:
    async def call(method: str, path: str, body: Any, params: dict[str, str] | None,
                   token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
            r = await client.request(method, path, json=body, params=params, headers=headers)
        if r.status_code >= 400:
            raise HTTPException(status_code=502, detail=f"spatiotemporal {path}: {r.status_code} "
                                                        f"{r.text[:300]}")
        return r.json()
    return call


def _ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _tiles(bbox: list[float], max_km2: float = 800.0) -> list[list[float]]:
    """The box cut into tiles the range query accepts (it refuses areas over 1,000 km²); a fix
    on a shared edge may come twice and is dropped as a duplicate by `rules.clean`."""
    w, s, e, n = bbox
    km_x = (e - w) * 111.32 * float(np.cos(np.radians((s + n) / 2)))
    km_y = (n - s) * 110.574
    k = max(1, int(np.ceil(np.sqrt(km_x * km_y / max_km2))))
    xs, ys = np.linspace(w, e, k + 1), np.linspace(s, n, k + 1)
    return [[float(xs[i]), float(ys[j]), float(xs[i + 1]), float(ys[j + 1])]
            for i in range(k) for j in range(k)]


async def _tracks(up: Upstream, q: ComputeRequest, bbox: list[float], token: str | None
                  ) -> list[Track]:
    subj: list[str] = []
    t: list[float] = []
    lon: list[float] = []
    lat: list[float] = []
    for box in _tiles(bbox):
        cursor = None
        for _ in range(MAX_PAGES):
            body = {"schema": "cityos.stquery.range_query.v1", "dataset": q.dataset,
                    "start": q.start.isoformat(), "end": q.end.isoformat(), "bbox": box,
                    "limit": 10000, "cursor": cursor}
            page = await up("POST", "/query/range", body, None, token)
            for f in page["features"]:
                subj.append(f["properties"]["subject"])
                t.append(_ts(f["properties"]["ts"]))
                lon.append(f["geometry"]["coordinates"][0])
                lat.append(f["geometry"]["coordinates"][1])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    s, ta, xa, ya = np.array(subj, dtype=str), np.array(t), np.array(lon), np.array(lat)
    return [Track(str(v), ta[s == v], xa[s == v], ya[s == v]) for v in np.unique(s)]


def _until(value: Any, tz: ZoneInfo) -> float:
    """When a licence stops being valid: a date is valid through that local day, a zoned time
    until then; NaN when there is nothing readable."""
    if not isinstance(value, str) or not value.strip():
        return float("nan")
    try:
        until = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return float("nan")
    if until.tzinfo is None:
        day = datetime.combine(until.date(), time(), tz)
        return (day + timedelta(days=1)).timestamp()
    return until.timestamp()


async def _entities(up: Upstream, datasets: list[str], at: datetime, token: str | None
                    ) -> list[dict[str, Any]]:
    return [f for ds in datasets for f in await listing(up, ds, at, token)]


async def _places(up: Upstream, datasets: list[str], at: datetime, token: str | None,
                  enterprise: bool, tz: ZoneInfo | None = None) -> Places:
    rows: list[tuple[str, float, float, str, str, float, str, str, float]] = []
    for f in await _entities(up, datasets, at, token):
        g, p = f.get("geometry"), f["properties"]
        if not g or g.get("type") != "Point":
            continue
        attrs = p.get("attrs") or {}
        status = str(attrs.get("status", "operating")) if enterprise else "operating"
        since = _ts(p["valid_from"]) if enterprise and status != "operating" else float("nan")
        until = _until(attrs.get("licence_valid_until"), tz or ZoneInfo(Thresholds().timezone))
        rows.append((str(p.get("entity_id", f.get("id"))), *g["coordinates"][:2],
                     str(p.get("category") or ""), status, since,
                     str(attrs.get("credit_code") or ""), str(attrs.get("licence_no") or ""),
                     until))
    if not rows:
        return Places.empty()
    cols = list(zip(*rows, strict=True))
    reg: dict[str, Any] = {}
    if enterprise:
        reg = {"credit_code": np.array(cols[6], dtype=str),
               "licence_no": np.array(cols[7], dtype=str),
               "licence_until": np.array(cols[8], dtype=float)}
    return Places(np.array(cols[0], dtype=str), np.array(cols[1], dtype=float),
                  np.array(cols[2], dtype=float), np.array(cols[3], dtype=str),
                  np.array(cols[4], dtype=str), np.array(cols[5], dtype=float), **reg)


def _yes(value: Any) -> bool:
    """A flag as a department's file may give it (a string field too); only a clear no is no."""
    return str(value).strip().lower() not in ("false", "0", "no", "n", "否")


async def _licensed(up: Upstream, q: ComputeRequest, token: str | None) -> dict[str, bool]:
    """Plate -> licensed to operate, from the vehicles datasets, then the request's override.
    A vehicle registered nowhere counts as licensed: missing data must not raise warnings."""
    licensed = {str(f["properties"].get("entity_id", f.get("id"))):
                _yes((f["properties"].get("attrs") or {}).get("licensed", True))
                for f in await _entities(up, q.vehicle_datasets, q.end, token)}
    licensed.update(dict.fromkeys(q.unlicensed, False))
    return licensed


def _trip(f: dict[str, Any], tz: ZoneInfo) -> Trip | None:
    """A declared trip from its entity; None when it names no vehicle, time or route."""
    p = f["properties"]
    attrs = p.get("attrs") or {}
    g = f.get("geometry")
    route = g["coordinates"] if g and g.get("type") == "LineString" else attrs.get("waypoints")
    vehicle = attrs.get("vehicle")
    try:
        if attrs.get("start") and attrs.get("end"):
            start, end = _ts(str(attrs["start"])), _ts(str(attrs["end"]))
        else:
            day = datetime.combine(date.fromisoformat(str(attrs.get("date"))), time(), tz)
            start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()
        xy = np.asarray(route, dtype=float)
    except (TypeError, ValueError):
        return None
    if not vehicle or xy.ndim != 2 or len(xy) < 2 or xy.shape[1] < 2:
        return None
    return Trip(str(p.get("entity_id", f.get("id"))), str(vehicle), start, end, xy[:, 0],
                xy[:, 1])


async def declared_trips(up: Upstream, datasets: list[str], at: datetime, token: str | None,
                         tz: ZoneInfo) -> list[Trip]:
    """Every readable declared trip of the datasets as of `at` (live warnings keep those not
    ended before their windows: late fixes may still fall in them)."""
    found = [_trip(f, tz) for f in await _entities(up, datasets, at, token)]
    return [t for t in found if t is not None]


async def _trips(up: Upstream, q: ComputeRequest, token: str | None, tz: ZoneInfo
                 ) -> list[Trip]:
    t0, t1 = q.start.timestamp(), q.end.timestamp()
    return [t for t in await declared_trips(up, q.trip_datasets, q.end, token, tz)
            if t.start < t1 and t.end > t0]


async def _stay_features(up: Upstream, q: ComputeRequest, token: str | None
                         ) -> list[dict[str, Any]]:
    """Stay points of the window, asked in pieces the query accepts (at most 2 days). Pieces
    overlap by STAY_OVERLAP; a stay arriving in a piece's overlap is taken from the next piece,
    which sees it whole (a stay longer than the overlap across a cut may come cut)."""
    found: list[dict[str, Any]] = []
    a = q.start
    while True:
        b = min(q.end, a + STAY_PIECE)
        sp = await up("POST", "/query/staypoints", {
            "schema": "cityos.stquery.staypoint_query.v1", "dataset": q.dataset,
            "start": a.isoformat(), "end": b.isoformat(),
            "params": {"distance_m": 200.0, "duration_s": 1200.0, "max_gap_s": 3 * 3600.0}},
            None, token)
        if b >= q.end:
            return found + list(sp["features"])
        cut = (b - STAY_OVERLAP).timestamp()
        found += [f for f in sp["features"] if _ts(f["properties"]["arrival"]) < cut]
        a = b - STAY_OVERLAP


def _iso(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@post("/warnings/compute", tags=["warnings"], opt=scope("hazchem:read"), status_code=200)
async def compute(data: ComputeRequest, state: State, request: Request[Any, Any, Any]
                  ) -> ComputeResult:
    """Warnings of one window: stays at closed/suspended enterprises, stays with nothing
    registered nearby and the suspected black-workshop sites they add up to, fatigue and night
    driving, trips of vehicles not licensed to operate, route deviations (with the reachable
    area and the nearest on-duty traffic police), enterprises with an expired licence or
    inconsistent registration that still receive vehicles."""
    if data.end <= data.start:
        raise HTTPException(status_code=400, detail="end must be after start")
    th: Thresholds = state.thresholds
    up: Upstream = state.upstream
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else None
    tracks = [rules.clean(tr, th) for tr in await _tracks(up, data, data.bbox or state.bbox, token)]
    stays = rules.stays_from_features(await _stay_features(up, data, token))
    tz = ZoneInfo(th.timezone)
    ents = await _places(up, data.enterprise_datasets, data.end, token, enterprise=True, tz=tz)
    pois = await _places(up, data.poi_datasets, data.end, token, enterprise=False)
    licensed = await _licensed(up, data, token)
    trips = await _trips(up, data, token, tz)
    warnings = rules.detect_all(tracks, licensed, stays, ents, pois, th, trips=trips)
    how = Interception(data.road_network, data.reach_minutes, data.staff_dataset, data.police_unit)
    warnings = [await intercept(up, how, w, token) for w in warnings]
    posted = await post_warnings(state.pool, state.bus, warnings) if data.post else 0
    return ComputeResult(
        warnings=[WarningOut(w.kind, w.vehicle, rules.subject(w), _iso(w.start), _iso(w.end),
                             w.lon, w.lat, w.severity, w.evidence, idempotency_key(w))
                  for w in warnings],
        fixes=sum(len(tr.t) for tr in tracks), stays=len(stays), posted=posted)


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              upstream: Upstream | None = None, thresholds: Thresholds | None = None,
              risk: RiskSettings | None = None, hub: Upstream | None = None) -> Litestar:
    up = upstream or http_upstream(os.environ.get("CITYOS_HAZCHEM_SPATIOTEMPORAL_URL",
                                                  "http://127.0.0.1:8002"))

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        b = City(settings.city_dir).bbox
        th = thresholds or live.thresholds_from_env()
        app.state.update(pool=pool, bus=bus, upstream=up, thresholds=th,
                         bbox=[b.west, b.south, b.east, b.north])
        options = live.LiveSettings.from_env()
        tz = ZoneInfo(th.timezone)
        # hazchem's own service client (CITYOS_CLIENT_ID/SECRET), one for live and risk.
        source = risk_api.service_token()
        token = source or live.no_token
        registry = live.registry_from(
            lambda ds, at, tok, ent: _places(up, ds, at, tok, ent, tz),
            lambda ds, at, tok: _licensed(up, ComputeRequest(
                dataset="", start=at, end=at, vehicle_datasets=ds), tok),
            lambda ds, at, tok: declared_trips(up, ds, at, tok, tz), options, token)
        how = options.interception()

        async def enrich(w: rules.Warning) -> rules.Warning:
            return await intercept(up, how, w, await token())

        app.state.live = await live.start(pool, bus, th, registry, options, enrich)
        risk_api.start(app, pool, City(settings.city_dir), up, _tiles(app.state.bbox),
                       app.state.bbox, risk, hub, source)

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS,
        route_handlers=[compute, *risk_api.ROUTES], start=start, auth=auth,
        title="CityOS hazardous-chemical supervision",
        description="危化品全流程监管: warnings from hazardous-goods vehicle tracks, posted to the "
                    "event hub as system reports.")
