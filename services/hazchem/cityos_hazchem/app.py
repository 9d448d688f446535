"""The hazchem service: `POST /warnings/compute` re-computes the warnings of a window.

It reads only the platform's public APIs, as the signed-in person (their bearer token is passed
on): fixes from the spatio-temporal range query, stay points from its stay-point query,
enterprises and POIs from its entity listing; then runs the rules and posts each new warning to
the event hub as a `system` report on `reports.system` (category 0803 危化品异常).
"""

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import msgspec
import numpy as np
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from msgspec import Meta, Struct

from cityos_hazchem import rules
from cityos_hazchem.reports import to_report
from cityos_hazchem.rules import Places, Thresholds, Track
from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings

SCHEMA = "hazchem"
MIGRATIONS = Path(__file__).parent / "migrations"
MAX_PAGES = 5000

# (method, path, json body or None, query params, bearer token) -> decoded JSON
Upstream = Callable[[str, str, Any, dict[str, str] | None, str | None], Awaitable[Any]]


class ComputeRequest(Struct, frozen=True, forbid_unknown_fields=True):
    dataset: str  # vehicle GPS fixes
    start: datetime
    end: datetime
    enterprise_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    poi_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    unlicensed: Annotated[list[str], Meta(max_length=100_000)] = msgspec.field(default_factory=list)
    post: bool = True  # post new warnings to the event hub
    bbox: Annotated[list[float], Meta(min_length=4, max_length=4)] | None = None  # default: the city


class WarningOut(Struct, frozen=True):
    kind: str
    vehicle: str
    start: datetime
    end: datetime
    lon: float
    lat: float
    severity: int
    evidence: dict[str, Any]


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


async def _places(up: Upstream, datasets: list[str], at: datetime, token: str | None,
                  enterprise: bool) -> Places:
    rows: list[tuple[str, float, float, str, str, float]] = []
    for ds in datasets:
        fc = await up("GET", f"/datasets/{ds}/entities", None,
                      {"at": at.isoformat(), "limit": "10000"}, token)
        for f in fc["features"]:
            g, p = f.get("geometry"), f["properties"]
            if not g or g.get("type") != "Point":
                continue
            attrs = p.get("attrs") or {}
            status = str(attrs.get("status", "operating")) if enterprise else "operating"
            since = _ts(p["valid_from"]) if enterprise and status != "operating" else float("nan")
            rows.append((str(p.get("entity_id", f.get("id"))), *g["coordinates"][:2],
                         str(p.get("category") or ""), status, since))
    if not rows:
        return Places.empty()
    cols = list(zip(*rows, strict=True))
    return Places(np.array(cols[0], dtype=str), np.array(cols[1], dtype=float),
                  np.array(cols[2], dtype=float), np.array(cols[3], dtype=str),
                  np.array(cols[4], dtype=str), np.array(cols[5], dtype=float))


def _iso(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@post("/warnings/compute", tags=["warnings"], opt=scope("hazchem:read"), status_code=200)
async def compute(data: ComputeRequest, state: State, request: Request[Any, Any, Any]
                  ) -> ComputeResult:
    """Warnings of one window: stays at closed/suspended enterprises, stays with nothing
    registered nearby, fatigue and night driving, trips of vehicles not licensed to operate."""
    if data.end <= data.start:
        raise HTTPException(status_code=400, detail="end must be after start")
    th: Thresholds = state.thresholds
    up: Upstream = state.upstream
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.lower().startswith("bearer ") else None
    tracks = [rules.clean(tr, th) for tr in await _tracks(up, data, data.bbox or state.bbox, token)]
    sp = await up("POST", "/query/staypoints", {
        "schema": "cityos.stquery.staypoint_query.v1", "dataset": data.dataset,
        "start": data.start.isoformat(), "end": data.end.isoformat(),
        "params": {"distance_m": 200.0, "duration_s": 1200.0, "max_gap_s": 3 * 3600.0}},
        None, token)
    stays = rules.stays_from_features(sp["features"])
    ents = await _places(up, data.enterprise_datasets, data.end, token, enterprise=True)
    pois = await _places(up, data.poi_datasets, data.end, token, enterprise=False)
    licensed = {tr.vehicle: tr.vehicle not in set(data.unlicensed) for tr in tracks}
    warnings = rules.detect_all(tracks, licensed, stays, ents, pois, th)
    posted = await _post(state, warnings) if data.post else 0
    return ComputeResult(
        warnings=[WarningOut(w.kind, w.vehicle, _iso(w.start), _iso(w.end), w.lon, w.lat,
                             w.severity, w.evidence) for w in warnings],
        fixes=sum(len(tr.t) for tr in tracks), stays=len(stays), posted=posted)


async def _post(state: State, warnings: list[rules.Warning]) -> int:
    pool: asyncpg.Pool = state.pool
    bus: Bus = state.bus
    posted = 0
    for w in warnings:
        report = to_report(w)
        key = report.idempotency_key or ""
        new = await pool.fetchval(
            "INSERT INTO posted_warnings (key, kind, vehicle) VALUES ($1, $2, $3)"
            " ON CONFLICT (key) DO NOTHING RETURNING true", key, w.kind, w.vehicle)
        if new:
            await bus.publish("reports.system", report, msg_id=key)
            posted += 1
    return posted


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              upstream: Upstream | None = None, thresholds: Thresholds | None = None) -> Litestar:
    up = upstream or http_upstream(os.environ.get("CITYOS_HAZCHEM_SPATIOTEMPORAL_URL",
                                                  "http://127.0.0.1:8002"))

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        b = City(settings.city_dir).bbox
        app.state.update(pool=pool, bus=bus, upstream=up, thresholds=thresholds or Thresholds(),
                         bbox=[b.west, b.south, b.east, b.north])

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=[compute], start=start,
        auth=auth, title="CityOS hazardous-chemical supervision",
        description="危化品全流程监管: warnings from hazardous-goods vehicle tracks, posted to the "
                    "event hub as system reports.")
