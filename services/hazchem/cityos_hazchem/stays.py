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

import bisect
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


def _walk(tr: Track, p: StayParams, origin: int) -> tuple[list[tuple[int, int, bool]],
                                                          list[int]]:
    """The runs of a cleaned track (sorted, no duplicate times) walked from row `origin`, a run
    start: the stays as (start, end exclusive, open) rows, and every run's start row."""
    t, n = tr.t[origin:], len(tr.t) - origin
    rlon, rlat = np.radians(tr.lon[origin:]), np.radians(tr.lat[origin:])
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
    rows: list[tuple[int, int, bool]] = []
    starts: list[int] = []
    s = 0
    while n:
        starts.append(s + origin)
        c = nxt_list[s]
        if c < 0:
            c = scan(s)
        if c >= n:
            if p.include_last and t_list[n - 1] - t_list[s] >= p.duration_s:
                rows.append((s + origin, n + origin, True))
            break
        if not gap_list[c] and t_list[c] - t_list[s] >= p.duration_s:
            rows.append((s + origin, c + origin, False))
        s = c
    return rows, starts


def _stays(tr: Track, rows: Sequence[tuple[int, int, bool]]) -> Stays:
    t = tr.t
    return Stays(np.array([tr.vehicle] * len(rows), dtype=str),
                 np.array([t[a] for a, _, _ in rows], dtype=float),
                 np.array([t[b - 1] if o else t[b] for _, b, o in rows], dtype=float),
                 np.array([tr.lon[a:b].mean() for a, b, _ in rows], dtype=float),
                 np.array([tr.lat[a:b].mean() for a, b, _ in rows], dtype=float))


def detect(tr: Track, p: StayParams = COMPUTE) -> Stays:
    """Stays of a cleaned track (sorted, no duplicate times)."""
    return _stays(tr, _walk(tr, p, 0)[0])


class Walk:
    """The stays of one vehicle's live window, walked again only from the last run start
    before what changed: the runs before it, and the stays they closed, cannot change."""

    def __init__(self, p: StayParams = COMPUTE) -> None:
        self.p = p
        self.starts: list[float] = []  # times of the run starts walked so far
        self.closed: list[tuple[float, float, float, float]] = []  # arrival, departure, lon, lat

    def update(self, tr: Track, since: float) -> Stays:
        """Stays of the cleaned window `tr`, whose fixes before `since` are as last time."""
        k = bisect.bisect_left(self.starts, since) - 1
        origin = int(np.searchsorted(tr.t, self.starts[k])) if k >= 0 else 0
        if k >= 0 and origin < len(tr.t) and tr.t[origin] == self.starts[k]:
            last = k == len(self.starts) - 1
            self.closed = [c for c in self.closed if c[0] < self.starts[k]]
            del self.starts[k:]
        else:  # nothing to keep (new, or the window moved past every run start known)
            last, origin, self.starts, self.closed = False, 0, [], []
        if last:
            # The run still open last time (often a parked vehicle's, thousands of fixes long)
            # is only checked against what changed in it.
            rows, starts = self._open_run(tr, origin, since)
        else:
            rows, starts = _walk(tr, self.p, origin)
        self.starts += tr.t[starts].tolist()
        found = _stays(tr, rows)
        still = [i for i, (_, _, o) in enumerate(rows) if o]
        self.closed += [(float(found.arrival[i]), float(found.departure[i]), float(found.lon[i]),
                         float(found.lat[i])) for i in range(len(rows)) if i not in still]
        out = [*self.closed, *((float(found.arrival[i]), float(found.departure[i]),
                                float(found.lon[i]), float(found.lat[i])) for i in still)]
        cols = list(zip(*out, strict=True)) or [(), (), (), ()]
        return Stays(np.array([tr.vehicle] * len(out), dtype=str),
                     *(np.array(c, dtype=float) for c in cols))

    def _open_run(self, tr: Track, s: int, since: float) -> tuple[list[tuple[int, int, bool]],
                                                                  list[int]]:
        """The walk from run start `s`, whose fixes before `since` were within reach of it."""
        p, t, n = self.p, tr.t, len(tr.t)
        gaps = np.flatnonzero(np.diff(t[s:]) > p.max_gap_s)
        c = s + 1 + int(gaps[0]) if len(gaps) else n
        j0 = max(s + 1, int(np.searchsorted(t, since)))
        if j0 < c:
            rlon, rlat = np.radians(tr.lon[[s]]), np.radians(tr.lat[[s]])
            far = np.flatnonzero(_distance(
                rlon, rlat, np.cos(rlat), np.radians(tr.lon[j0:c]), np.radians(tr.lat[j0:c]),
                np.cos(np.radians(tr.lat[j0:c]))) >= p.distance_m)
            c = j0 + int(far[0]) if len(far) else c
        if c >= n:
            opened = p.include_last and t[n - 1] - t[s] >= p.duration_s
            return ([(s, n, True)] if opened else []), [s]
        ended_by_gap = t[c] - t[c - 1] > p.max_gap_s  # a gap ends a run without a stay
        rows = [(s, c, False)] if not ended_by_gap and t[c] - t[s] >= p.duration_s else []
        more, starts = _walk(tr, p, c)
        return rows + more, [s, *starts]

    def forget_before(self, t: float) -> None:
        """The window now starts at `t`: runs and stays starting earlier are gone with it."""
        self.starts = self.starts[bisect.bisect_left(self.starts, t):]
        self.closed = [c for c in self.closed if c[0] >= t]


def concat(parts: Sequence[Stays]) -> Stays:
    def cat(name: str, dtype: type) -> np.ndarray:
        return np.concatenate([np.zeros(0, dtype=dtype), *(getattr(p, name) for p in parts)])

    return Stays(cat("vehicle", str), cat("arrival", float), cat("departure", float),
                 cat("lon", float), cat("lat", float))
