"""Query 6, route deviation: where a vehicle's cleaned track was more than D metres from the
route it declared for at least T seconds; when and where it left (and came back).

Crossing points are interpolated between the last fix on one side and the first on the other,
so "left at" does not depend on when the next fix happened to be sent.
"""

from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import shapely
from shapely.geometry import LineString, shape

from cityos_contracts.stquery import DeviationFeature, DeviationProps, DeviationQuery, Deviations
from cityos_spatiotemporal.queries import limits
from cityos_spatiotemporal.queries.errors import BadQuery
from cityos_spatiotemporal.queries.geo import planar
from cityos_spatiotemporal.queries.trajectory import track


def _route(q: DeviationQuery) -> LineString:
    if (q.route is None) == (q.waypoints is None):
        raise BadQuery(detail="give exactly one of `route` (a GeoJSON LineString) or "
                              "`waypoints` ([[lon, lat], ...])")
    try:
        geom: Any = shape(q.route) if q.route is not None else LineString(q.waypoints)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise BadQuery(detail=f"the route is not a valid line: {exc}") from exc
    if not isinstance(geom, LineString) or geom.is_empty or geom.length == 0:
        raise BadQuery(detail="the route must be a LineString of at least two distinct points")
    coords = np.asarray(geom.coords)
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise BadQuery(detail="route coordinates must be [lon, lat] in WGS84")
    return geom


def _cross(d0: float, d1: float, limit: float) -> float:
    """Where between two fixes (0..1) the distance to the route passes `limit`."""
    return 0.0 if d1 == d0 else float(np.clip((limit - d0) / (d1 - d0), 0.0, 1.0))


async def deviations(pool: asyncpg.Pool, q: DeviationQuery) -> Deviations:
    route = _route(q)
    async with limits.bounded(pool) as conn:
        tr = await track(conn, q.dataset, q.subject, q.start, q.end, q.max_speed_kmh)
    n = len(tr.t)
    if n == 0:
        return Deviations(features=[], fixes=0)
    lon0, lat0 = route.centroid.x, route.centroid.y
    route_m = planar(route, lat0, lon0)
    fixes_m = planar(shapely.points(tr.lon, tr.lat), lat0, lon0)
    dist = shapely.distance(route_m, fixes_m)
    off = dist > q.max_distance_m
    edges = np.diff(np.concatenate(([0], off.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # off: [start, end)
    times = tr.t
    features = []
    for i, j in zip(starts.tolist(), ends.tolist(), strict=True):
        if i > 0:
            f = _cross(dist[i - 1], dist[i], q.max_distance_m)
            left = (times[i - 1] + f * (times[i] - times[i - 1]),
                    tr.lon[i - 1] + f * (tr.lon[i] - tr.lon[i - 1]),
                    tr.lat[i - 1] + f * (tr.lat[i] - tr.lat[i - 1]))
        else:  # off the route from the first fix
            left = (times[0], tr.lon[0], tr.lat[0])
        back: tuple[float, float, float] | None = None
        if j < n:
            f = _cross(dist[j - 1], dist[j], q.max_distance_m)
            back = (times[j - 1] + f * (times[j] - times[j - 1]),
                    tr.lon[j - 1] + f * (tr.lon[j] - tr.lon[j - 1]),
                    tr.lat[j - 1] + f * (tr.lat[j] - tr.lat[j - 1]))
        until = back[0] if back else times[j - 1]
        if until - left[0] < q.min_duration_s:
            continue
        path = [[left[1], left[2]], *np.column_stack((tr.lon[i:j], tr.lat[i:j])).tolist()]
        if back:
            path.append([back[1], back[2]])
        features.append(DeviationFeature(
            geometry={"type": "LineString", "coordinates": path},
            properties=DeviationProps(
                left_at=datetime.fromtimestamp(left[0], UTC), left_lon=round(float(left[1]), 7),
                left_lat=round(float(left[2]), 7), duration_s=round(float(until - left[0]), 1),
                max_distance_m=round(float(dist[i:j].max()), 1), fixes=j - i,
                returned_at=datetime.fromtimestamp(back[0], UTC) if back else None,
                returned_lon=round(float(back[1]), 7) if back else None,
                returned_lat=round(float(back[2]), 7) if back else None)))
    return Deviations(features=features, fixes=n)
