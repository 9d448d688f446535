"""Where a vehicle that left its declared route can be stopped: shared by the window compute
(`POST /warnings/compute`, from its request) and live warnings (from `CITYOS_HAZCHEM_*`).

A route deviation gets the area the vehicle can reach within `reach_minutes` on the road
network and the intersections on its edge (the spatio-temporal reachable query), and the
nearest on-duty traffic police (its nearest query). A query that fails leaves its reason in the
evidence: the warning itself still goes out, a missing road network must not hide it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from litestar.exceptions import HTTPException

from cityos_hazchem import rules

if TYPE_CHECKING:
    from cityos_hazchem.app import Upstream


@dataclass(frozen=True)
class Interception:
    road_network: str | None = None  # none: no reachable area
    reach_minutes: float = 5.0
    staff_dataset: str = "field_staff"
    police_unit: str = "JJZD"  # 公安局交通警察支队
    # Live warnings wait at most this long for each query (their batch is not acked until
    # posted); None: as long as the upstream's own timeout.
    timeout_s: float | None = None


Failure = (HTTPException, httpx.HTTPError, TimeoutError)


def _reason(exc: Exception) -> str:
    if isinstance(exc, HTTPException):
        return str(exc.detail)
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"unreachable: {exc!r}"


async def intercept(up: Upstream, how: Interception, w: rules.Warning, token: str | None
                    ) -> rules.Warning:
    """The warning with `reachable` (or its error) and `police` (or `police_error`) added;
    other kinds come back as they are."""
    if w.kind != rules.ROUTE_DEVIATION:
        return w
    evidence: dict[str, Any] = dict(w.evidence)
    if how.road_network:
        try:
            area = await asyncio.wait_for(up("POST", "/query/reachable", {
                "schema": "cityos.stquery.reachable_query.v1", "network": how.road_network,
                "lon": w.lon, "lat": w.lat, "minutes": how.reach_minutes}, None, token),
                how.timeout_s)
            feats = area["features"]
            evidence["reachable"] = {
                "minutes": how.reach_minutes, "snap_distance_m": area["snap_distance_m"],
                "area": next((f["geometry"] for f in feats
                              if f["properties"]["kind"] == "area"), None),
                "intersections": [
                    {"lon": f["geometry"]["coordinates"][0],
                     "lat": f["geometry"]["coordinates"][1],
                     "seconds": f["properties"]["seconds"], "node": f["properties"]["node"]}
                    for f in feats if f["properties"]["kind"] == "boundary"]}
        except Failure as exc:
            evidence["reachable"] = {"error": _reason(exc)}
    try:
        near = await asyncio.wait_for(up("POST", "/query/nearest", {
            "schema": "cityos.stquery.nearest_query.v1", "dataset": how.staff_dataset,
            "lon": w.lon, "lat": w.lat, "k": 3, "kind": "mobile",
            "attrs": {"unit": how.police_unit, "on_duty": True}}, None, token), how.timeout_s)
        evidence["police"] = [
            {"id": f["properties"]["id"], "lon": f["geometry"]["coordinates"][0],
             "lat": f["geometry"]["coordinates"][1], "distance_m": f["properties"]["distance_m"],
             "ts": f["properties"]["ts"]} for f in near["features"]]
    except Failure as exc:
        evidence["police_error"] = _reason(exc)
    return dataclasses.replace(w, evidence=evidence)
