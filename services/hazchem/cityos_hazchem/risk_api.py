"""The risk index in the service: `POST /risk/compute`, `GET /risk` and the daily run.

A day's index is computed from the inputs (risk_inputs.py) by the model (risk.py) and stored in
hazchem's schema, replacing that day's earlier result. The daily run computes yesterday once the
city's local `daily_at` has passed, only if that day has no stored run: a restart, or a second
replica (an advisory lock keeps them apart), never computes a day twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import h3
import httpx
import msgspec
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import Parameter

from cityos_contracts.hazchem import (
    RiskComputeRequest,
    RiskFactor,
    RiskFeature,
    RiskMap,
    RiskProps,
    RiskRun,
)
from cityos_hazchem import risk, risk_inputs
from cityos_hazchem.risk import FACTORS, Breakdown, RiskSettings
from cityos_kit.auth import AuthSettings, scope
from cityos_kit.city import City
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.telemetry import inject_headers, logger, tracer

if TYPE_CHECKING:  # app.py registers these routes, so it cannot be imported from here
    from cityos_hazchem.app import Upstream

log = logger("cityos.hazchem.risk")
_tracer = tracer("cityos.hazchem.risk")
TokenSource = Callable[[], Awaitable[str | None]]
LOCK_KEY = int.from_bytes(hashlib.sha256(b"hazchem.risk.daily").digest()[:8], "big", signed=True)
TOP_IN_RUN = 5


def hub_upstream(base_url: str, timeout_s: float = 60.0) -> Upstream:
    """The event hub over HTTP; its refusals, and its silence, become a 502 naming it."""
    async def call(method: str, path: str, body: Any, params: dict[str, str] | None,
                   token: str | None) -> Any:
        # The hub's spans join this computation's trace.
        headers = inject_headers({"Authorization": f"Bearer {token}"} if token else {})
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
                r = await client.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise HTTPException(status_code=502, detail=f"event hub at {base_url} did not answer "
                                                        f"(CITYOS_HAZCHEM_RISK_EVENTS_URL): {exc!r}"
                                ) from exc
        if r.status_code >= 400:
            raise HTTPException(status_code=502, detail=f"event hub {path}: {r.status_code} "
                                                        f"{r.text[:300]}")
        return r.json()
    return call


@dataclass
class RiskService:
    pool: asyncpg.Pool
    settings: RiskSettings
    st: Upstream  # the spatio-temporal service
    hub: Upstream  # the event hub
    city: City
    tiles: list[list[float]]  # the city cut into areas the cell query accepts
    bbox: list[float]

    def day_end(self, day: date) -> datetime:
        return datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(self.settings.timezone))

    @cached_property
    def cell_street(self) -> dict[str, str]:
        return risk.street_cells(self.city.divisions, self.settings.h3_resolution)

    async def compute(self, day: date, token: str | None,
                      trigger: Literal["request", "daily"]) -> RiskRun:
        s, end = self.settings, self.day_end(day)
        at = end - timedelta(microseconds=1)  # entities as they were at the end of the day
        traffic, fixes = await risk_inputs.traffic(
            self.st, s, self.tiles, end - timedelta(days=s.traffic_days), end, token)
        points = {
            "enterprises": await risk_inputs.enterprises(self.st, s, day, at, token),
            "population": await risk_inputs.population(self.st, s, at, token),
            "warnings": await risk_inputs.warnings(
                self.pool, end - timedelta(days=s.warning_days), end),
            "incidents": await risk_inputs.incidents(
                self.hub, s, self.bbox, end - timedelta(days=s.incident_days), end, token)}
        read = {"fixes": fixes} | {f: len(p.amount) for f, p in points.items()}
        cells, raw = risk.cell_raw(traffic, points, s.h3_resolution)
        by_cell = risk.score(cells, raw, s.weights(), s.scale_quantile)
        streets = sorted({str(f["properties"]["code"]) for f in self.city.divisions["features"]
                          if f["properties"].get("level") == "street"})
        by_street = risk.score(streets, risk.street_raw(cells, raw, self.cell_street, streets),
                               s.weights(), s.scale_quantile)
        computed_at = datetime.now(UTC)
        cell_rows = self._rows(day, "cell", by_cell)
        await self._store(day, computed_at, trigger, read, {"cell": by_cell, "street": by_street},
                          cell_rows + self._rows(day, "street", by_street))
        return RiskRun(day=day, computed_at=computed_at, trigger=trigger, cells=len(cells),
                       streets=len(streets), read=read,
                       top=[_props(r) for r in cell_rows[:TOP_IN_RUN]])

    def _rows(self, day: date, level: str, b: Breakdown) -> list[dict[str, Any]]:
        cell_street = self.cell_street
        divisions = {str(f["properties"]["code"]): f for f in self.city.divisions["features"]}
        rows = []
        for rank, i in enumerate(b.order(), start=1):
            area = b.areas[i]
            div = divisions.get(area) if level == "street" else None
            rows.append({
                "day": day, "level": level, "area": area, "rank": rank,
                "score": float(b.score[i]), "factors": b.factors(int(i)),
                "name": div["properties"].get("name") if div else None,
                "street": cell_street.get(area) if level == "cell" else None,
                "geometry": div["geometry"] if div else _hexagon(area)})
        return rows

    async def _store(self, day: date, computed_at: datetime, trigger: str, read: dict[str, int],
                     levels: dict[str, Breakdown], rows: list[dict[str, Any]]) -> None:
        s = self.settings
        params = {"h3_resolution": s.h3_resolution, "weights": s.weights(),
                  "scales": {level: dict(zip(FACTORS, b.scales.tolist(), strict=True))
                             for level, b in levels.items()},
                  "windows_days": _windows(s), "scale_quantile": s.scale_quantile}
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM risk_runs WHERE day = $1", day)
            await conn.execute(
                "INSERT INTO risk_runs (day, computed_at, trigger, params, read)"
                " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)", day, computed_at, trigger,
                _json(params), _json(read))
            await conn.executemany(
                "INSERT INTO risk_areas (day, level, area, rank, score, name, street, factors,"
                " geometry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)",
                [(r["day"], r["level"], r["area"], r["rank"], r["score"], r["name"], r["street"],
                  _json(r["factors"]), _json(r["geometry"])) for r in rows])

    async def load(self, day: date | None, level: Literal["cell", "street"],
                   top: int | None) -> RiskMap:
        run = await self.pool.fetchrow(
            "SELECT * FROM risk_runs WHERE ($1::date IS NULL OR day = $1)"
            " ORDER BY day DESC LIMIT 1", day)
        if run is None:
            raise NotFoundException(detail=f"no risk index for {day}" if day else
                                    "no risk index computed yet: POST /risk/compute")
        rows = await self.pool.fetch(
            "SELECT * FROM risk_areas WHERE day = $1 AND level = $2 ORDER BY rank"
            " LIMIT $3", run["day"], level, top)
        params = msgspec.json.decode(run["params"])
        units = risk.CELL_UNITS if level == "cell" else {
            f: f"{u} per km²" for f, u in risk.CELL_UNITS.items()}
        return RiskMap(
            day=run["day"], level=level, computed_at=run["computed_at"],
            h3_resolution=params["h3_resolution"], weights=params["weights"],
            scales=params["scales"][level], units=units,
            windows_days=params["windows_days"],
            features=[RiskFeature(geometry=msgspec.json.decode(r["geometry"]), properties=_props(r))
                      for r in rows])


def _windows(s: RiskSettings) -> dict[str, int]:
    return {"traffic": s.traffic_days, "warnings": s.warning_days, "incidents": s.incident_days}


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _hexagon(cell: str) -> dict[str, Any]:
    ring = [[lon, lat] for lat, lon in h3.cell_to_boundary(cell)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def _props(r: Any) -> RiskProps:
    factors = r["factors"]
    if isinstance(factors, str):
        factors = msgspec.json.decode(factors)
    return RiskProps(area=r["area"], level=r["level"], rank=r["rank"], score=r["score"],
                     factors=[msgspec.convert(f, RiskFactor) for f in factors],
                     name=r["name"], street=r["street"])


# -- HTTP ------------------------------------------------------------------------------------


def _bearer(request: Request[Any, Any, Any]) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


@post("/risk/compute", tags=["risk"], opt=scope("hazchem:read"), status_code=200)
async def compute_risk(state: State, request: Request[Any, Any, Any],
                       data: RiskComputeRequest | None = None) -> RiskRun:
    """Recompute a day's risk index now (default yesterday, local), reading the platform's APIs
    as the caller (who needs `stquery:read` and `cases:read` too); replaces the stored day."""
    svc: RiskService = state.risk
    today = datetime.now(ZoneInfo(svc.settings.timezone)).date()
    day = (data.day if data else None) or today - timedelta(days=1)
    if day > today:
        raise ClientException(detail=f"{day} has not begun yet (today is {today} in the city)")
    return await svc.compute(day, _bearer(request), "request")


@get("/risk", tags=["risk"], opt=scope("hazchem:read"), media_type="application/geo+json")
async def get_risk(
    state: State, day: date | None = None, level: Literal["cell", "street"] = "cell",
    top: Annotated[int | None, Parameter(ge=1, le=100_000,
                                         description="only the N highest-risk areas")] = None,
) -> RiskMap:
    """A day's risk index (default the latest computed) as GeoJSON, highest risk first, each
    area with every factor's raw value, normalised value, weight and contribution."""
    svc: RiskService = state.risk
    return await svc.load(day, level, top)


ROUTES = [compute_risk, get_risk]


# -- the daily run ---------------------------------------------------------------------------


def service_token() -> TokenSource | None:
    """hazchem's own token (client credentials CITYOS_CLIENT_ID/SECRET), None without them."""
    client_id, secret = os.environ.get("CITYOS_CLIENT_ID"), os.environ.get("CITYOS_CLIENT_SECRET")
    if not client_id or not secret:
        return None
    creds = ClientCredentials(AuthSettings.from_env().issuer, client_id, secret)

    async def token() -> str | None:
        return await creds.token()
    return token


class DailyRisk:
    def __init__(self, svc: RiskService, token: TokenSource) -> None:
        self.svc, self.token = svc, token
        self._task: asyncio.Task[None] | None = None

    def due_day(self, now: datetime) -> date:
        """The newest day whose run is due: yesterday once `daily_at` has passed, else the day
        before (a service down at `daily_at` catches up when it starts)."""
        local = now.astimezone(ZoneInfo(self.svc.settings.timezone))
        back = 1 if local.time() >= time.fromisoformat(self.svc.settings.daily_at) else 2
        return local.date() - timedelta(days=back)

    async def missed(self, conn: asyncpg.Connection, due: date) -> list[date]:
        """The days after the last stored run up to the due one, newest first (the current map
        first), at most `catch_up_days`; with no run stored yet, the due day alone."""
        last = await conn.fetchval("SELECT max(day) FROM risk_runs WHERE day <= $1", due)
        if last == due:
            return []
        n = (due - last).days if last else 1
        return [due - timedelta(days=k) for k in range(min(n, self.svc.settings.catch_up_days))]

    async def tick(self, now: datetime) -> list[RiskRun]:
        """Compute each missed day, once: none while another replica is computing (it holds the
        lock); a day that fails stops the tick, and the next tick tries it again."""
        runs: list[RiskRun] = []
        async with self.svc.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return runs
            try:
                for day in await self.missed(conn, self.due_day(now)):
                    # A request may have computed it meanwhile.
                    if await conn.fetchval(
                            "SELECT EXISTS (SELECT 1 FROM risk_runs WHERE day = $1)", day):
                        continue
                    with _tracer.start_as_current_span("hazchem risk daily",
                                                       attributes={"risk.day": str(day)}):
                        run = await self.svc.compute(day, await self.token(), "daily")
                    log.info("risk_daily_computed", day=str(day), cells=run.cells)
                    runs.append(run)
                return runs
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unreachable upstream: the day is retried next tick
                if self.svc.pool.is_closing():
                    return
                log.warning("risk_daily_failed", error=repr(exc))
            await asyncio.sleep(self.svc.settings.tick_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hazchem-risk-daily")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def start(app: Litestar, pool: asyncpg.Pool, city: City, st: Upstream, tiles: list[list[float]],
          bbox: list[float], settings: RiskSettings | None = None, hub: Upstream | None = None,
          token: TokenSource | None = None) -> None:
    """Put the risk service on `app.state` and start the daily run (when it is on and hazchem
    has credentials of its own to read the platform with)."""
    s = settings or RiskSettings.from_env()
    s.check()
    svc = RiskService(pool, s, st, hub or hub_upstream(s.events_url), city, tiles, bbox)
    app.state.risk = svc
    source = token or service_token()
    if not s.daily:
        return
    if source is None:
        log.warning("risk_daily_off", reason="no CITYOS_CLIENT_ID/CITYOS_CLIENT_SECRET")
        return
    daily = DailyRisk(svc, source)
    daily.start()
    app.on_shutdown.insert(0, daily.stop)
