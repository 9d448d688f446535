"""Stay-point detection (Li et al. 2008), the same definition as trackintel's
`generate_staypoints(method="sliding")`, for many subjects at once.

A run starts at a fix s. The first later fix c that is at least D metres from s, or that comes
more than G seconds after the fix before it (a gap), ends the run; the next run starts at c.
A run ended by distance is a stay if t[c] - t[s] >= T: arrival t[s], departure t[c] (the first
fix outside, as in the paper), centre the mean of fixes s..c-1. A gap ends a run without a stay.

Same as trackintel: thresholds (>= D, >= T, gap > G), the great-circle formula and radius,
departure time, `include_last`. Documented differences: the centre is the mean of the run's
fixes, each fix counted (trackintel takes the circular mean of the *distinct* positions, so a
vehicle reporting the same coordinates twice weighs them once); callers dedupe fixes on
(subject, time) where trackintel drops rows equal in every column.

How it is fast: for every fix i the end of a run starting at i ("next(i)") is found for runs
that end within a few fixes by vectorised numpy over all fixes of all subjects at once; a plain
loop then follows next() from each subject's first fix, which only touches the run starts, and
scans ahead with numpy the rare runs that last longer (the stays themselves).
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

EARTH_RADIUS_M = 6_371_000.0  # as trackintel
NEAR_STEPS = 4  # next() resolved for all fixes up to this many fixes ahead
SCAN_CHUNK = 256


@dataclass(frozen=True)
class Params:
    distance_m: float = 200.0
    duration_s: float = 1200.0
    max_gap_s: float = 900.0
    include_last: bool = False


@dataclass(frozen=True)
class Fixes:
    """Fixes of many subjects: group g is rows offsets[g]:offsets[g+1], in time order.

    `weight`, `sum_lon`, `sum_lat` say how many fixes each row stands for and their coordinate
    sums (1, lon, lat for a plain fix); a row carried over from an earlier computation (the
    start of a run still open) stands for all the fixes of that run processed so far.
    `prev_t[g]` is the time of the fix before group g's second row when that fix is not in the
    arrays (the carried run's last fix), NaN otherwise.
    """

    offsets: Ints
    t: Floats
    lon: Floats
    lat: Floats
    weight: Floats | None = None
    sum_lon: Floats | None = None
    sum_lat: Floats | None = None
    prev_t: Floats | None = None

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class Stays:
    group: Ints
    arrival: Floats
    departure: Floats
    lon: Floats
    lat: Floats
    fixes: Ints
    open: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.group)


@dataclass(frozen=True)
class Runs:
    """Per group, the run still open after the last row: where it starts, the last fix's time,
    how many fixes it holds and their sums (what to carry into the next computation)."""

    start_row: Ints  # -1: the group had no rows
    start_t: Floats
    start_lon: Floats
    start_lat: Floats
    last_t: Floats
    fixes: Ints
    sum_lon: Floats
    sum_lat: Floats


def _distance(rlon1: Floats, rlat1: Floats, clat1: Floats, rlon2: Floats, rlat2: Floats,
              clat2: Floats) -> Floats:
    """Great-circle metres by the spherical law of cosines, as trackintel computes them."""
    x = np.cos(rlat1 - rlat2) - clat1 * clat2 * (1.0 - np.cos(rlon1 - rlon2))
    return np.asarray(EARTH_RADIUS_M * np.arccos(np.clip(x, -1.0, 1.0)))


def detect(fx: Fixes, p: Params) -> tuple[Stays, Runs]:
    n, groups = len(fx), len(fx.offsets) - 1
    rlon, rlat = np.radians(fx.lon), np.radians(fx.lat)
    clat = np.cos(rlat)
    row_group = np.repeat(np.arange(groups), np.diff(fx.offsets))
    group_end = fx.offsets[1:][row_group] if n else np.zeros(0, dtype=np.int64)

    # gap[i]: row i comes more than G after the row before it (never for a group's first row).
    gap = np.zeros(n, dtype=bool)
    if n > 1:
        gap[1:] = np.diff(fx.t) > p.max_gap_s
    firsts = fx.offsets[:-1][np.diff(fx.offsets) > 0]
    gap[firsts] = False
    if fx.prev_t is not None:
        second = fx.offsets[:-1] + 1
        has = (~np.isnan(fx.prev_t)) & (second < fx.offsets[1:])
        gap[second[has]] = fx.t[second[has]] - fx.prev_t[has] > p.max_gap_s

    # next(i) for runs that end within NEAR_STEPS rows; group_end when the group ends first;
    # -1 when the run goes on (resolved by scanning, if the walk ever starts a run there).
    nxt = np.full(n, -1, dtype=np.int64)
    todo = np.arange(n, dtype=np.int64)
    for m in range(1, NEAR_STEPS + 1):
        j = todo + m
        inside = j < group_end[todo]
        nxt[todo[~inside]] = group_end[todo[~inside]]
        todo, j = todo[inside], j[inside]
        event = gap[j] | (_distance(rlon[todo], rlat[todo], clat[todo], rlon[j], rlat[j],
                                    clat[j]) >= p.distance_m)
        nxt[todo[event]] = j[event]
        todo = todo[~event]

    def scan(s: int, end: int) -> int:
        lo = s + NEAR_STEPS + 1
        while lo < end:
            hi = min(lo + SCAN_CHUNK, end)
            event = gap[lo:hi] | (_distance(rlon[s], rlat[s], clat[s], rlon[lo:hi], rlat[lo:hi],
                                            clat[lo:hi]) >= p.distance_m)
            hit = np.flatnonzero(event)
            if len(hit):
                return lo + int(hit[0])
            lo = hi
        return end

    t_list, nxt_list, gap_list = fx.t.tolist(), nxt.tolist(), gap.tolist()
    stay_rows: list[tuple[int, int, int]] = []  # group, start row, end row (exclusive)
    final = np.full(groups, -1, dtype=np.int64)
    for g, (b, e) in enumerate(zip(fx.offsets[:-1].tolist(), fx.offsets[1:].tolist(),
                                   strict=True)):
        if b == e:
            continue
        s = b
        while True:
            c = nxt_list[s]
            if c < 0:
                c = scan(s, e)
            if c >= e:
                break
            if not gap_list[c] and t_list[c] - t_list[s] >= p.duration_s:
                stay_rows.append((g, s, c))
            s = c
        final[g] = s
    return _stays(fx, p, stay_rows, final), _runs(fx, final)


def _prefix(fx: Fixes) -> tuple[Floats, Floats, Floats, float, float]:
    """Prefix sums of weights and of coordinates relative to a reference (keeps precision)."""
    ref_lon = float(fx.lon[0]) if len(fx) else 0.0
    ref_lat = float(fx.lat[0]) if len(fx) else 0.0
    w = np.ones(len(fx)) if fx.weight is None else fx.weight
    slon = fx.lon if fx.sum_lon is None else fx.sum_lon
    slat = fx.lat if fx.sum_lat is None else fx.sum_lat
    zero = np.zeros(1)
    return (np.concatenate((zero, np.cumsum(w))),
            np.concatenate((zero, np.cumsum(slon - w * ref_lon))),
            np.concatenate((zero, np.cumsum(slat - w * ref_lat))), ref_lon, ref_lat)


def _stays(fx: Fixes, p: Params, rows: list[tuple[int, int, int]], final: Ints) -> Stays:
    if p.include_last:
        for g in np.flatnonzero(final >= 0).tolist():
            s, last = int(final[g]), int(fx.offsets[g + 1]) - 1
            if fx.t[last] - fx.t[s] >= p.duration_s:
                rows.append((g, s, last + 1))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    grp, st, en = arr[:, 0], arr[:, 1], arr[:, 2]
    w, cl, ca, ref_lon, ref_lat = _prefix(fx)
    count = w[en] - w[st]
    is_open = en == fx.offsets[1:][grp]
    departure = np.where(is_open, fx.t[np.maximum(en - 1, 0)],
                         fx.t[np.minimum(en, len(fx) - 1)])
    order = np.lexsort((fx.t[st], grp))
    return Stays(group=grp[order], arrival=fx.t[st][order], departure=departure[order],
                 lon=((cl[en] - cl[st]) / count + ref_lon)[order],
                 lat=((ca[en] - ca[st]) / count + ref_lat)[order],
                 fixes=np.rint(count).astype(np.int64)[order], open=is_open[order])


def _runs(fx: Fixes, final: Ints) -> Runs:
    w, cl, ca, ref_lon, ref_lat = _prefix(fx)
    has = final >= 0
    s = np.where(has, final, 0)
    e = np.where(has, fx.offsets[1:], 0)
    last = np.maximum(e - 1, 0)
    count = w[e] - w[s]
    nan = np.full(len(final), np.nan)

    def pick(a: Floats) -> Floats:
        return np.where(has, a[s], nan) if len(fx) else nan

    return Runs(
        start_row=final, start_t=pick(fx.t), start_lon=pick(fx.lon), start_lat=pick(fx.lat),
        last_t=np.where(has, fx.t[last], nan) if len(fx) else nan,
        fixes=np.rint(count).astype(np.int64),
        sum_lon=np.where(has, cl[e] - cl[s] + count * ref_lon, 0.0),
        sum_lat=np.where(has, ca[e] - ca[s] + count * ref_lat, 0.0))
