"""Query 3, trajectory: one subject's fixes in a window, cleaned, as a GeoJSON LineString with
a time per point. Stay points and route deviation read tracks through `track()` too."""

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import numpy as np
import numpy.typing as npt

from cityos_contracts.stquery import Trajectory, TrajectoryProps
from cityos_spatiotemporal.queries import catalog, limits
from cityos_spatiotemporal.queries.errors import BadQuery
from cityos_spatiotemporal.queries.geo import great_circle_m
from cityos_spatiotemporal.store import subject_key

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Track:
    """Cleaned fixes of one subject, in time order (t: epoch seconds)."""

    t: Floats
    lon: Floats
    lat: Floats
    speed_kmh: Floats  # NaN where the fix had none
    fixes: int
    duplicates: int
    out_of_order: int
    jumps: int

    def times(self) -> list[datetime]:
        return [datetime.fromtimestamp(x, UTC) for x in self.t.tolist()]


def clean(t: Floats, lon: Floats, lat: Floats, speed: Floats, max_speed_kmh: float) -> Track:
    """Sort (arrival order in, time order out), drop repeated times, drop impossible jumps.

    A jump is a fix the vehicle could only reach from the last kept fix faster than
    `max_speed_kmh`; it is dropped and the next fix is compared with the same kept fix. A first
    fix that is itself the outlier (its next two fixes agree with each other, not with it) is
    dropped too, so one bad first fix cannot discard a whole track.
    """
    n = len(t)
    out_of_order = int((t[1:] < np.maximum.accumulate(t)[:-1]).sum()) if n else 0
    order = np.argsort(t, kind="stable")
    t, lon, lat, speed = t[order], lon[order], lat[order], speed[order]
    first = np.ones(n, dtype=bool)
    first[1:] = t[1:] != t[:-1]
    duplicates = int(n - first.sum())
    t, lon, lat, speed = t[first], lon[first], lat[first], speed[first]
    vmax = max_speed_kmh / 3.6
    keep = np.ones(len(t), dtype=bool)
    if len(t) > 1:
        step_speed = great_circle_m(lon[:-1], lat[:-1], lon[1:], lat[1:]) / np.maximum(
            np.diff(t), 1e-3)
        if (step_speed > vmax).any():
            keep = _greedy(t, lon, lat, vmax)
    return Track(t[keep], lon[keep], lat[keep], speed[keep], fixes=n, duplicates=duplicates,
                 out_of_order=out_of_order, jumps=int((~keep).sum()))


def _plausible(t: Floats, lon: Floats, lat: Floats, i: int, j: int, vmax: float) -> bool:
    d = float(great_circle_m(lon[i], lat[i], lon[j], lat[j]))
    return d <= vmax * max(float(t[j] - t[i]), 1e-3)


def _greedy(t: Floats, lon: Floats, lat: Floats, vmax: float) -> npt.NDArray[np.bool_]:
    n = len(t)
    keep = np.zeros(n, dtype=bool)
    start = 0
    while start + 2 < n and not _plausible(t, lon, lat, start, start + 1, vmax) and \
            not _plausible(t, lon, lat, start, start + 2, vmax) and \
            _plausible(t, lon, lat, start + 1, start + 2, vmax):
        start += 1
    last = start
    keep[start] = True
    for i in range(start + 1, n):
        if _plausible(t, lon, lat, last, i, vmax):
            keep[i] = True
            last = i
    return keep


async def track(conn: asyncpg.Connection, dataset: str, subject: str, start: datetime,
                end: datetime, max_speed_kmh: float) -> Track:
    """The subject's cleaned fixes in [start, end); 404 for an unknown dataset or subject."""
    limits.check_window(start, end)
    await catalog.require_subject(conn, dataset, subject)
    # Physical order is arrival order (the store only appends), which out_of_order reports.
    rows = await conn.fetch(
        "SELECT date_part('epoch', ts) AS t, lon, lat, speed_kmh FROM observations"
        " WHERE subject_key = $1 AND ts >= $2 AND ts < $3 AND dataset = $4 AND subject = $5"
        " ORDER BY tableoid, ctid LIMIT $6", subject_key(dataset, subject), start, end, dataset,
        subject, limits.MAX_TRACK_FIXES + 1)
    if len(rows) > limits.MAX_TRACK_FIXES:
        raise BadQuery(detail=f"more than {limits.MAX_TRACK_FIXES:,} fixes of `{subject}` in the "
                              "window: narrow it")
    cols = np.array([(r["t"], r["lon"], r["lat"], np.nan if r["speed_kmh"] is None
                      else r["speed_kmh"]) for r in rows], dtype=np.float64).reshape(-1, 4)
    return clean(cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3], max_speed_kmh)


async def trajectory(pool: asyncpg.Pool, dataset: str, subject: str, start: datetime,
                     end: datetime, max_speed_kmh: float) -> Trajectory:
    async with limits.bounded(pool) as conn:
        tr = await track(conn, dataset, subject, start, end, max_speed_kmh)
    coords = np.column_stack((tr.lon, tr.lat)).tolist()
    geometry = {"type": "LineString", "coordinates": coords} if len(coords) > 1 else \
        {"type": "Point", "coordinates": coords[0]} if coords else \
        {"type": "LineString", "coordinates": []}
    length = float(great_circle_m(tr.lon[:-1], tr.lat[:-1], tr.lon[1:], tr.lat[1:]).sum()) \
        if len(coords) > 1 else 0.0
    return Trajectory(geometry=geometry, properties=TrajectoryProps(
        dataset=dataset, subject=subject, times=tr.times(), fixes=tr.fixes,
        duplicates=tr.duplicates, out_of_order=tr.out_of_order, jumps=tr.jumps,
        length_m=round(length, 1),
        speeds_kmh=[None if np.isnan(s) else s for s in tr.speed_kmh.tolist()]))
