"""The risk index's inputs, read only through public APIs and hazchem's own table.

- traffic: the spatio-temporal cell-count query (`POST /query/cells`, H3 grid) per GPS dataset,
  over the city cut into tiles the query accepts and the window cut into its longest span;
- enterprises and the population layer: the entity listing (`GET /datasets/{name}/entities`);
- warnings: hazchem's `posted_warnings` rows that carry a place;
- incidents: the event hub's case search (`GET /cases`), paged.

Calls go with one bearer token: the caller's for `POST /risk/compute`, hazchem's own service
token for the daily run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg

from cityos_hazchem.entities import listing
from cityos_hazchem.risk import Points, RiskSettings, enterprise_weights

if TYPE_CHECKING:  # app.py registers the risk routes, so it cannot be imported from here
    from cityos_hazchem.app import Upstream

MAX_CASE_PAGES = 400  # 200,000 cases: far more than a city's hazardous incidents in a year


@dataclass
class Inputs:
    traffic: dict[str, float] = field(default_factory=dict)  # H3 cell -> vehicle-hours
    points: dict[str, Points] = field(default_factory=dict)  # factor -> located amounts
    read: dict[str, int] = field(default_factory=dict)  # what was read, for the run record


def _windows(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    while start < end:
        out.append((start, min(end, start + timedelta(hours=hours))))
        start = out[-1][1]
    return out


async def traffic(st: Upstream, s: RiskSettings, tiles: list[list[float]], start: datetime,
                  end: datetime, token: str | None) -> tuple[dict[str, float], int]:
    """Vehicle-hours per H3 cell and the fixes counted. One bucket per call (its whole span),
    so a tile of a city is at most a few thousand groups."""
    fixes: dict[str, int] = {}
    for dataset in s.listed(s.gps_datasets):
        for lo, hi in _windows(start, end, s.traffic_query_hours):
            for box in tiles:
                fc = await st("POST", "/query/cells", {
                    "schema": "cityos.stquery.cell_count_query.v1", "dataset": dataset,
                    "start": lo.isoformat(), "end": hi.isoformat(), "bbox": box, "grid": "h3",
                    "h3_resolution": s.h3_resolution,
                    "bucket_s": int((hi - lo).total_seconds())}, None, token)
                for f in fc["features"]:
                    p = f["properties"]
                    fixes[p["cell"]] = fixes.get(p["cell"], 0) + int(p["count"])
    hours = s.fix_interval_s / 3600.0
    return {c: n * hours for c, n in fixes.items()}, sum(fixes.values())


def _day(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None  # an unreadable date is not an expired licence


async def _entities(st: Upstream, dataset: str, at: datetime, token: str | None
                    ) -> list[dict[str, Any]]:
    return [f for f in await listing(st, dataset, at, token)
            if f.get("geometry") and f["geometry"].get("type") == "Point"]


async def enterprises(st: Upstream, s: RiskSettings, day: date, at: datetime,
                      token: str | None) -> Points:
    """Every enterprise as it was at the end of `day`, weighted by kind and status."""
    feats = [f for ds in s.listed(s.enterprise_datasets) for f in await _entities(st, ds, at, token)]
    attrs = [f["properties"].get("attrs") or {} for f in feats]
    w = enterprise_weights(
        [str(f["properties"].get("category") or a.get("kind") or "") for f, a in
         zip(feats, attrs, strict=True)],
        [str(a.get("status", "operating")) for a in attrs],
        [_day(a.get("licence_valid_until")) for a in attrs], day, s)
    return Points.of((*f["geometry"]["coordinates"][:2], float(x))
                     for f, x in zip(feats, w, strict=True))


async def population(st: Upstream, s: RiskSettings, at: datetime, token: str | None) -> Points:
    feats = await _entities(st, s.population_dataset, at, token)
    return Points.of((*f["geometry"]["coordinates"][:2],
                      float((f["properties"].get("attrs") or {}).get(s.population_attr) or 0))
                     for f in feats)


async def warnings(pool: asyncpg.Pool, start: datetime, end: datetime) -> Points:
    """hazchem's own warnings that started in the window (a warning with no place is not
    counted: rows posted before warnings kept their place)."""
    rows = await pool.fetch(
        "SELECT lon, lat FROM posted_warnings WHERE lon IS NOT NULL AND starts_at >= $1"
        " AND starts_at < $2", start, end)
    return Points.of((r["lon"], r["lat"], 1.0) for r in rows)


async def incidents(hub: Upstream, s: RiskSettings, bbox: list[float], start: datetime,
                    end: datetime, token: str | None) -> Points:
    rows: list[tuple[float, float, float]] = []
    for category in s.listed(s.incident_categories):
        cursor: str | None = None
        for _ in range(MAX_CASE_PAGES):
            params = {"category": category, "start": start.isoformat(), "end": end.isoformat(),
                      "bbox": ",".join(f"{v:.6f}" for v in bbox), "limit": "500"}
            page = await hub("GET", "/cases", None,
                             params | ({"cursor": cursor} if cursor else {}), token)
            for case in page["items"]:
                loc = case.get("location") or {}
                if loc.get("lon") is None or case.get("merged_into") is not None:
                    continue  # no place, or counted in the case it merged into
                if set(case.get("channels") or []) == {"system"}:
                    continue  # raised by a hazchem warning: counted as a warning
                rows.append((float(loc["lon"]), float(loc["lat"]), 1.0))
            cursor = page.get("next_cursor")
            if not cursor:
                break
    return Points.of(rows)
