"""Stay points of one vehicle's recent fixes, for live warnings.

The window compute (`POST /warnings/compute`) asks the spatio-temporal service's stay-point
query; live warnings cannot wait for that service to store a fix and close a stay, so they run
the same definition here on the in-memory window, with the parameters the compute endpoint asks
for (tests/hazchem/test_live.py checks both give the same stays). Services do not import each
other, hence this short copy of the one algorithm:

Li et al. (2008), trackintel's "sliding": a run starts at fix s; the first later fix c at least
`distance_m` from s, or more than `max_gap_s` after the fix before it, ends it and starts the
next. A run ended by distance lasting `duration_s` is a stay: arrival t[s], departure t[c],
centre the mean of fixes s..c-1; a gap ends a run without a stay. `include_last` also reports
the run still open at the end (the vehicle has not left yet): live warnings need it to warn
while the vehicle is still there, and its arrival is the one the closed stay will have.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cityos_hazchem.rules import Floats, Stays, Track

EARTH_RADIUS_M = 6_371_000.0  # as the spatio-temporal service (and trackintel)
NEAR_STEPS = 4  # runs ending within this many fixes are found for every fix at once


@dataclass(frozen=True)
class StayParams:
    distance_m: float = 200.0
    duration_s: float = 1200.0
    max_gap_s: float = 3 * 3600.0
    include_last: bool = True


# What `POST /warnings/compute` asks the spatio-temporal service for (closed stays only there).
COMPUTE = StayParams()


def _distance(rlon1: Floats, rlat1: Floats, clat1: Floats, rlon2: Floats, rlat2: Floats,
              clat2: Floats) -> Floats:
    x = np.cos(rlat1 - rlat2) - clat1 * clat2 * (1.0 - np.cos(rlon1 - rlon2))
    return np.asarray(EARTH_RADIUS_M * np.arccos(np.clip(x, -1.0, 1.0)))


def detect(tr: Track, p: StayParams = COMPUTE) -> Stays:
    """Stays of a cleaned track (sorted, no duplicate times)."""
    t, n = tr.t, len(tr.t)
    rlon, rlat = np.radians(tr.lon), np.radians(tr.lat)
    clat = np.cos(rlat)
    gap = np.zeros(n, dtype=bool)
    gap[1:] = np.diff(t) > p.max_gap_s
    # nxt[i]: where a run starting at i ends, for runs ending within NEAR_STEPS fixes (n: the
    # track ends first; -1: longer, scanned only if the walk below starts a run there).
    nxt = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n, dtype=np.int64)
    for m in range(1, NEAR_STEPS + 1):
        j = todo + m
        inside = j < n
        nxt[todo[~inside]] = n
        todo, j = todo[inside], j[inside]
        event = gap[j] | (_distance(rlon[todo], rlat[todo], clat[todo], rlon[j], rlat[j],
                                    clat[j]) >= p.distance_m)
        nxt[todo[event]] = j[event]
        todo = todo[~event]

    def scan(s: int) -> int:
        rest = np.arange(s + NEAR_STEPS + 1, n)
        event = gap[rest] | (_distance(rlon[s], rlat[s], clat[s], rlon[rest], rlat[rest],
                                       clat[rest]) >= p.distance_m)
        hit = np.flatnonzero(event)
        return int(rest[hit[0]]) if len(hit) else n

    t_list, nxt_list, gap_list = t.tolist(), nxt.tolist(), gap.tolist()
    rows: list[tuple[int, int, bool]] = []  # start, end (exclusive), open
    s = 0
    while n:
        c = nxt_list[s]
        if c < 0:
            c = scan(s)
        if c >= n:
            if p.include_last and t_list[n - 1] - t_list[s] >= p.duration_s:
                rows.append((s, n, True))
            break
        if not gap_list[c] and t_list[c] - t_list[s] >= p.duration_s:
            rows.append((s, c, False))
        s = c
    arrival = np.array([t_list[a] for a, _, _ in rows], dtype=float)
    departure = np.array([t_list[b - 1] if o else t_list[b] for _, b, o in rows], dtype=float)
    lon = np.array([float(tr.lon[a:b].mean()) for a, b, _ in rows], dtype=float)
    lat = np.array([float(tr.lat[a:b].mean()) for a, b, _ in rows], dtype=float)
    return Stays(np.array([tr.vehicle] * len(rows), dtype=str), arrival, departure, lon, lat)


def concat(parts: Sequence[Stays]) -> Stays:
    def cat(name: str, dtype: type) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=dtype), *(getattr(p, name) for p in parts)])

    return Stays(cat("vehicle", str), cat("arrival", float), cat("departure", float),
                 cat("lon", float), cat("lat", float))
