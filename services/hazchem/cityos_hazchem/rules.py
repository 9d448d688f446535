"""Warning rules over hazardous-goods vehicle tracks: pure, vectorised numpy.

Inputs are what the platform's public APIs return: a vehicle's fixes (the spatio-temporal
range query), its stay points (the stay-point query, `StayPoints` features turned into arrays by
`stays_from_features`), the enterprises and POIs (registered datasets). Nothing here touches
the network or the database, so every rule is testable and re-computable over any window.

Times are epoch seconds (UTC); local-time rules use `Thresholds.timezone`.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0

CLOSED_STAY = "closed_enterprise_stay"
NOTHING_STAY = "nothing_registered_stay"
FATIGUE = "fatigue_driving"
NIGHT = "night_driving"
NON_OPERATING = "non_operating_vehicle"
ROUTE_DEVIATION = "route_deviation"
LICENCE = "enterprise_licence_anomaly"
BLACK_SITE = "suspected_black_workshop"
KINDS = (CLOSED_STAY, NOTHING_STAY, FATIGUE, NIGHT, NON_OPERATING, ROUTE_DEVIATION, LICENCE,
         BLACK_SITE)
# Kinds whose subject is a place (an enterprise, a suspected site), not the vehicle.
PLACE_KINDS = {LICENCE: "enterprise", BLACK_SITE: "site"}


@dataclass(frozen=True)
class Thresholds:
    """Per-city configuration; the defaults are the issue's (and the national rule's)."""

    enterprise_radius_m: float = 100.0
    min_stay_s: float = 30 * 60.0
    nothing_radius_m: float = 500.0
    max_driving_s: float = 4 * 3600.0
    min_rest_s: float = 20 * 60.0
    night_start: str = "02:00"  # local, [start, end); may wrap midnight
    night_end: str = "05:00"
    min_night_s: float = 60.0  # shorter night episodes are fix jitter, not driving
    timezone: str = "Asia/Shanghai"
    # Cleaning and motion.
    max_speed_kmh: float = 200.0  # a fix needing more than this both ways is an outlier
    stationary_m: float = 60.0  # an interval moving less than this ...
    stationary_mps: float = 0.5  # ... or slower than this on average is not driving
    # Route deviation: farther than this from the declared route for at least this long.
    route_max_m: float = 1000.0
    route_min_s: float = 5 * 60.0
    # Suspected black-workshop sites: nothing-registered stays in one grid cell (or touching
    # cells), visited on at least `site_min_visits` distinct (vehicle, local day) pairs.
    site_cell_m: float = 250.0
    site_min_visits: int = 3
    # Place warnings (licence anomalies, suspected sites) are one per place and period of this
    # many local days (7: Monday to Sunday): whichever window sees a place's evidence, live or
    # re-computed, names the same warning; a place still anomalous next period warns again.
    place_period_days: int = 7


@dataclass(frozen=True)
class Track:
    """One vehicle's fixes (any order, duplicates allowed)."""

    vehicle: str
    t: Floats
    lon: Floats
    lat: Floats


@dataclass(frozen=True)
class Stays:
    """Stay points of many vehicles (from the spatio-temporal service)."""

    vehicle: npt.NDArray[np.str_]
    arrival: Floats
    departure: Floats
    lon: Floats
    lat: Floats

    def __len__(self) -> int:
        return len(self.arrival)


@dataclass(frozen=True)
class Places:
    """Enterprises (status: operating/closed/suspended, effective from `status_since`; before
    that the place was operating) or POIs (status all "operating", kind their category)."""

    id: npt.NDArray[np.str_]
    lon: Floats
    lat: Floats
    kind: npt.NDArray[np.str_]
    status: npt.NDArray[np.str_]
    status_since: Floats  # NaN: always had this status
    # Registration (enterprises only; None: not checked): the unified social credit code, the
    # hazardous-goods licence number, and when the licence stops being valid (NaN: not given).
    credit_code: npt.NDArray[np.str_] | None = None
    licence_no: npt.NDArray[np.str_] | None = None
    licence_until: Floats | None = None

    def __len__(self) -> int:
        return len(self.id)

    @staticmethod
    def empty() -> "Places":
        e = np.zeros(0)
        s = np.zeros(0, dtype=str)
        return Places(s, e, e, s, s, e)


@dataclass(frozen=True)
class Trip:
    """A declared trip: the vehicle should stay on `route` (vertices) between start and end."""

    trip_id: str
    vehicle: str
    start: float
    end: float
    lon: Floats
    lat: Floats


@dataclass(frozen=True)
class Warning:
    kind: str
    vehicle: str
    start: float
    end: float
    lon: float
    lat: float
    severity: int
    evidence: dict[str, Any] = field(default_factory=dict)


def subject(w: Warning) -> str:
    """What the warning is about: the vehicle, or for place kinds the enterprise or site."""
    key = PLACE_KINDS.get(w.kind)
    return str(w.evidence[key]) if key else w.vehicle


_MONDAY = date(1970, 1, 5)


def period_starts(t: Floats, th: Thresholds) -> Floats:
    """The local start (epoch seconds) of the place period each time falls in: periods of
    `place_period_days` local days counted from a Monday, so they never depend on the window."""
    tz = ZoneInfo(th.timezone)
    out = np.empty(len(t))
    # One zone lookup per quarter hour present (zone offsets change on whole quarter hours).
    q, inv = np.unique(np.floor(np.asarray(t, dtype=float) / 900.0), return_inverse=True)
    for i, v in enumerate(q.tolist()):
        d = datetime.fromtimestamp(v * 900.0, tz).date()
        n = (d - _MONDAY).days // th.place_period_days * th.place_period_days
        out[inv == i] = datetime.combine(_MONDAY + timedelta(days=n), time(), tz).timestamp()
    return out


def _period(t0: float, th: Thresholds) -> str:
    """The period in a place warning's evidence: its local start, offset included (the key)."""
    return datetime.fromtimestamp(t0, ZoneInfo(th.timezone)).isoformat()


def episode_time(w: Warning) -> int:
    """The time in a warning's idempotency key: its start, or for a place warning the start of
    its period (the same in every window that sees the place in that period)."""
    if w.kind in PLACE_KINDS and "period" in w.evidence:
        return int(datetime.fromisoformat(w.evidence["period"]).timestamp())
    return int(w.start)


def _metres(lon1: Floats, lat1: Floats, lon2: Floats, lat2: Floats) -> Floats:
    """Equirectangular distance, exact enough at a few km; broadcasts."""
    k = M_PER_DEG_LON_EQ * np.cos(np.radians((lat1 + lat2) / 2))
    return np.asarray(np.hypot((lon2 - lon1) * k, (lat2 - lat1) * M_PER_DEG_LAT))


def clean(tr: Track, th: Thresholds) -> Track:
    """Sort by time, drop duplicates (same time), impossible positions and single wild outliers
    (a fix that needs more than `max_speed_kmh` to reach from both its neighbours)."""
    ok = np.isfinite(tr.lon) & np.isfinite(tr.lat) & (np.abs(tr.lon) > 1e-6) & (np.abs(tr.lat) > 1e-6)
    t, lon, lat = tr.t[ok], tr.lon[ok], tr.lat[ok]
    order = np.argsort(t, kind="stable")
    t, lon, lat = t[order], lon[order], lat[order]
    keep = np.ones(len(t), dtype=bool)
    keep[1:] = np.diff(t) > 0
    t, lon, lat = t[keep], lon[keep], lat[keep]
    if len(t) >= 3:
        vmax = th.max_speed_kmh / 3.6
        d = _metres(lon[:-1], lat[:-1], lon[1:], lat[1:])
        fast = d / np.maximum(np.diff(t), 1.0) > vmax
        bad = np.zeros(len(t), dtype=bool)
        bad[1:-1] = fast[:-1] & fast[1:]
        bad[0] = fast[0] and not (len(fast) > 1 and fast[1])
        bad[-1] = fast[-1] and not (len(fast) > 1 and fast[-2])
        t, lon, lat = t[~bad], lon[~bad], lat[~bad]
    return Track(tr.vehicle, t, lon, lat)


def _runs(mask: Bools) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Start and end (exclusive) indices of the runs of True in mask."""
    m = np.concatenate(([False], mask, [False])).astype(np.int8)
    d = np.diff(m)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


@dataclass(frozen=True)
class Driving:
    """Driving blocks of a cleaned track: movement between rests of at least `min_rest_s`."""

    start: Floats
    end: Floats
    moving: Bools  # per interval i -> i+1 of the track


def driving_blocks(tr: Track, th: Thresholds) -> Driving:
    n = len(tr.t)
    if n < 2:
        return Driving(np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool))
    dt = np.diff(tr.t)
    d = _metres(tr.lon[:-1], tr.lat[:-1], tr.lon[1:], tr.lat[1:])
    moving = (d >= th.stationary_m) & (d / np.maximum(dt, 1.0) >= th.stationary_mps)
    # Rests: runs of stationary intervals (a silent parked terminal is one long interval).
    rs, re_ = _runs(~moving)
    cum = np.concatenate(([0.0], np.cumsum(dt)))
    rest = (cum[re_] - cum[rs]) >= th.min_rest_s
    rs, re_ = rs[rest], re_[rest]
    # Blocks: between qualifying rests, trimmed to their moving intervals.
    cuts_s = np.concatenate(([0], re_))  # interval index where a block may start
    cuts_e = np.concatenate((rs, [n - 1]))  # interval index (exclusive) where it ends
    starts, ends = [], []
    mv_idx = np.flatnonzero(moving)
    for a, b in zip(cuts_s.tolist(), cuts_e.tolist(), strict=True):
        lo, hi = np.searchsorted(mv_idx, a), np.searchsorted(mv_idx, b)
        if hi > lo:
            starts.append(tr.t[mv_idx[lo]])
            ends.append(tr.t[mv_idx[hi - 1] + 1])
    return Driving(np.asarray(starts, dtype=float), np.asarray(ends, dtype=float), moving)


def _sod(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 3600 + int(m) * 60


def fatigue(tr: Track, dr: Driving, th: Thresholds) -> list[Warning]:
    out = []
    dur = dr.end - dr.start
    for i in np.flatnonzero(dur > th.max_driving_s).tolist():
        a, b = float(dr.start[i]), float(dr.end[i])
        j = int(np.searchsorted(tr.t, a + th.max_driving_s))
        j = min(j, len(tr.t) - 1)
        over_h = (dur[i] - th.max_driving_s) / 3600
        out.append(Warning(FATIGUE, tr.vehicle, a, b, float(tr.lon[j]), float(tr.lat[j]),
                           severity=1 + min(2, int(over_h)),
                           evidence={"driving_s": float(dur[i]), "limit_s": th.max_driving_s,
                                     "min_rest_s": th.min_rest_s}))
    return out


def night(tr: Track, dr: Driving, th: Thresholds) -> list[Warning]:
    if len(tr.t) < 2:
        return []
    offset = ZoneInfo(th.timezone).utcoffset(datetime.fromtimestamp(float(tr.t[0]), UTC))
    off = offset.total_seconds() if offset is not None else 0.0
    sod = (tr.t[:-1] + off) % 86400
    s, e = _sod(th.night_start), _sod(th.night_end)
    inside = (sod >= s) & (sod < e) if s < e else (sod >= s) | (sod < e)
    rs, re_ = _runs(inside & dr.moving)
    out = []
    for a, b in zip(rs.tolist(), re_.tolist(), strict=True):
        t0, t1 = float(tr.t[a]), float(tr.t[b])
        if t1 - t0 < th.min_night_s:
            continue
        out.append(Warning(NIGHT, tr.vehicle, t0, t1, float(tr.lon[a]), float(tr.lat[a]),
                           severity=1 + int(t1 - t0 >= 3600),
                           evidence={"window": [th.night_start, th.night_end],
                                     "timezone": th.timezone, "fixes": b - a + 1}))
    return out


def non_operating(tr: Track, dr: Driving, licensed: bool) -> list[Warning]:
    if licensed:
        return []
    out = []
    for a, b in zip(dr.start.tolist(), dr.end.tolist(), strict=True):
        i = int(np.searchsorted(tr.t, a))
        out.append(Warning(NON_OPERATING, tr.vehicle, a, b, float(tr.lon[i]), float(tr.lat[i]),
                           severity=2, evidence={"licensed": False, "driving_s": b - a}))
    return out


def _pairs_within(lon: Floats, lat: Floats, plon: Floats, plat: Floats, radius: float
                  ) -> tuple[Ints, Ints, Floats]:
    """(point, place, metres) of every pair within `radius`: places bucketed on a grid of
    `radius` cells, each point looking in its 3 x 3 cells, so a city's stays against its
    enterprises cost their pairs nearby, not stays x enterprises."""
    if not len(lon) or not len(plon):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    # Cells as wide in degrees as at the highest latitude present: never narrower than radius.
    top = min(89.0, float(max(np.abs(lat).max(), np.abs(plat).max())))
    kx = M_PER_DEG_LON_EQ * float(np.cos(np.radians(top))) / radius
    ky = M_PER_DEG_LAT / radius
    span = np.int64(1) << 32

    def key(x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return np.asarray(x * span + y, dtype=np.int64)

    pkey = key(np.floor(plon * kx).astype(np.int64), np.floor(plat * ky).astype(np.int64))
    order = np.argsort(pkey, kind="stable")
    skey = pkey[order]
    px, py = np.floor(lon * kx).astype(np.int64), np.floor(lat * ky).astype(np.int64)
    rows, cols = [], []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            k = key(px + dx, py + dy)
            lo = np.searchsorted(skey, k, "left")
            n = np.searchsorted(skey, k, "right") - lo
            total = int(n.sum())
            if total:
                starts = np.repeat(lo - (np.cumsum(n) - n), n)
                rows.append(np.repeat(np.arange(len(lon)), n))
                cols.append(order[starts + np.arange(total)])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    r, c = np.concatenate(rows), np.concatenate(cols)
    d = _metres(lon[r], lat[r], plon[c], plat[c])
    keep = d <= radius
    return r[keep], c[keep], d[keep]


def _nearest_within(lon: Floats, lat: Floats, pl: Places, radius: float) -> tuple[Ints, Floats]:
    """Per point, the nearest place within `radius` (-1: none; ties: the first place) and its
    distance (inf: none)."""
    r, c, d = _pairs_within(lon, lat, pl.lon, pl.lat, radius)
    nearest, dist = np.full(len(lon), -1, np.int64), np.full(len(lon), np.inf)
    o = np.lexsort((c, d, r))
    r, c, d = r[o], c[o], d[o]
    first = np.ones(len(r), dtype=bool)
    first[1:] = r[1:] != r[:-1]
    nearest[r[first]], dist[r[first]] = c[first], d[first]
    return nearest, dist


def _status_at(pl: Places, e: Ints, t: Floats) -> npt.NDArray[np.str_]:
    """The status place e[i] had at time t[i] (before `status_since` it was operating)."""
    since = np.where(np.isnan(pl.status_since[e]), -np.inf, pl.status_since[e])
    return np.where(t >= since, pl.status[e], "operating")


def stay_warnings(st: Stays, enterprises: Places, pois: Places, th: Thresholds) -> list[Warning]:
    """Closed/suspended-enterprise stays (severity rising with the visits to one enterprise in
    the window) and stays with no enterprise and no POI within `nothing_radius_m`."""
    long_ = (st.departure - st.arrival) >= th.min_stay_s
    idx = np.flatnonzero(long_)
    if len(idx) == 0:
        return []
    lon, lat, arr = st.lon[idx], st.lat[idx], st.arrival[idx]
    out: list[Warning] = []
    near_any = np.zeros(len(idx), dtype=bool)
    hits: list[tuple[int, int, float, str]] = []  # stay row, enterprise, distance, status
    for pl in (enterprises, pois):
        near_any[_pairs_within(lon, lat, pl.lon, pl.lat, th.nothing_radius_m)[0]] = True
    if len(enterprises):
        # The nearest enterprise within the radius decides (an operating one next door wins).
        nearest, dist = _nearest_within(lon, lat, enterprises, th.enterprise_radius_m)
        has = np.flatnonzero(nearest >= 0)
        then = _status_at(enterprises, nearest[has], arr[has])
        for r, e, s in zip(has.tolist(), nearest[has].tolist(), then.tolist(), strict=True):
            if s in ("closed", "suspended"):
                hits.append((r, e, float(dist[r]), s))
    visits: dict[int, int] = {}
    for r, e, dist_m, status in sorted(hits, key=lambda h: arr[h[0]]):
        visits[e] = visits.get(e, 0) + 1
        k = int(idx[r])
        out.append(Warning(CLOSED_STAY, str(st.vehicle[k]), float(st.arrival[k]),
                           float(st.departure[k]), float(st.lon[k]), float(st.lat[k]),
                           severity=min(3, visits[e]),
                           evidence={"enterprise": str(enterprises.id[e]), "status": status,
                                     "distance_m": round(dist_m, 1), "visit": visits[e],
                                     "stay_s": float(st.departure[k] - st.arrival[k])}))
    for r in np.flatnonzero(~near_any).tolist():
        k = int(idx[r])
        out.append(Warning(NOTHING_STAY, str(st.vehicle[k]), float(st.arrival[k]),
                           float(st.departure[k]), float(st.lon[k]), float(st.lat[k]), severity=1,
                           evidence={"radius_m": th.nothing_radius_m,
                                     "stay_s": float(st.departure[k] - st.arrival[k])}))
    return out


def route_distance(lon: Floats, lat: Floats, rlon: Floats, rlat: Floats) -> Floats:
    """Metres from each point to the polyline (rlon, rlat), in a local plane around it."""
    k = M_PER_DEG_LON_EQ * float(np.cos(np.radians(np.mean(rlat))))
    px, py = (lon - rlon[0]) * k, (lat - rlat[0]) * M_PER_DEG_LAT
    vx, vy = (rlon - rlon[0]) * k, (rlat - rlat[0]) * M_PER_DEG_LAT
    if len(rlon) == 1:
        return np.asarray(np.hypot(px - vx[0], py - vy[0]))
    ax, ay, dx, dy = vx[:-1], vy[:-1], np.diff(vx), np.diff(vy)
    l2 = np.maximum(dx * dx + dy * dy, 1e-9)
    out = np.empty(len(px))
    step = max(1, 2_000_000 // len(ax))  # bounds the points x segments block in memory
    for s in range(0, len(px), step):
        qx, qy = px[s:s + step, None], py[s:s + step, None]
        f = np.clip(((qx - ax) * dx + (qy - ay) * dy) / l2, 0.0, 1.0)
        out[s:s + step] = np.hypot(ax + f * dx - qx, ay + f * dy - qy).min(axis=1)
    return out


def route_deviation(tr: Track, trips: Sequence[Trip], th: Thresholds) -> list[Warning]:
    """Runs of fixes farther than `route_max_m` from the trip's declared route, seen off it for
    at least `route_min_s`. The place is where the vehicle was when the run became a warning
    (the start of the interception); a 300 m detour or a stop on the route never qualifies."""
    out = []
    for trip in trips:
        idx = np.flatnonzero((tr.t >= trip.start) & (tr.t <= trip.end))
        if len(idx) < 2 or len(trip.lon) == 0:
            continue
        d = route_distance(tr.lon[idx], tr.lat[idx], trip.lon, trip.lat)
        rs, re_ = _runs(d > th.route_max_m)
        for a, b in zip(rs.tolist(), re_.tolist(), strict=True):
            i, j = int(idx[a]), int(idx[b - 1])
            seen = float(tr.t[j] - tr.t[i])
            if seen < th.route_min_s:
                continue
            due = i + int(np.searchsorted(tr.t[i:j + 1], tr.t[i] + th.route_min_s))
            back = int(idx[b]) if b < len(idx) else None
            far = float(d[a:b].max())
            out.append(Warning(
                ROUTE_DEVIATION, tr.vehicle, float(tr.t[i]),
                float(tr.t[back] if back is not None else tr.t[j]),
                float(tr.lon[due]), float(tr.lat[due]),
                severity=min(3, 1 + int(far > 3 * th.route_max_m)
                             + int(back is None or seen > 6 * th.route_min_s)),
                evidence={"trip": trip.trip_id, "max_distance_m": round(far, 1),
                          "off_route_s": seen, "returned": back is not None,
                          "left_lon": round(float(tr.lon[i]), 6),
                          "left_lat": round(float(tr.lat[i]), 6),
                          "limit_m": th.route_max_m, "limit_s": th.route_min_s}))
    return out


_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code (GB 32100-2015, mod 31)."""
    total = sum(_CREDIT_CHARS.index(c) * w for c, w in zip(first17, _CREDIT_WEIGHTS, strict=True))
    return _CREDIT_CHARS[(31 - total % 31) % 31]


def valid_credit_code(code: str) -> bool:
    code = code.strip().upper()
    return len(code) == 18 and all(c in _CREDIT_CHARS for c in code) and \
        credit_check_char(code[:17]) == code[17]


def _shared_codes(pl: Places) -> set[str]:
    """Credit codes registered to more than one enterprise (one code names one legal entity;
    a branch has its own)."""
    if pl.credit_code is None:
        return set()
    codes, counts = np.unique(np.char.upper(np.char.strip(pl.credit_code.astype(str))),
                              return_counts=True)
    return {str(c) for c, n in zip(codes, counts, strict=True) if n > 1 and c}


def _registration_issues(pl: Places, e: int, shared: Collection[str] = ()) -> list[str]:
    issues = []
    if pl.credit_code is not None:
        code = str(pl.credit_code[e]).strip().upper()
        if not valid_credit_code(code):
            issues.append("credit_code_invalid")
        elif code in shared:
            issues.append("credit_code_shared")
    if pl.licence_no is not None and not str(pl.licence_no[e]).strip():
        issues.append("licence_no_missing")
    if pl.licence_until is not None and np.isnan(pl.licence_until[e]):
        issues.append("licence_valid_until_missing")
    return issues


def licence_anomaly(st: Stays, enterprises: Places, th: Thresholds) -> list[Warning]:
    """Enterprises that receive hazardous-goods vehicles (a stay within `enterprise_radius_m`,
    the nearest enterprise deciding) while their licence has expired at the stay's arrival or
    their registration is inconsistent (credit code invalid or shared with another enterprise,
    no licence number or validity): one warning per enterprise and place period (its key names
    the period, so every window seeing the place then gives the same one), severity rising with
    the visits."""
    if not len(st) or not len(enterprises) or enterprises.licence_until is None:
        return []
    nearest, _ = _nearest_within(st.lon, st.lat, enterprises, th.enterprise_radius_m)
    has = np.flatnonzero(nearest >= 0)
    until = enterprises.licence_until
    shared = _shared_codes(enterprises)
    registration = {e: _registration_issues(enterprises, e, shared)
                    for e in set(nearest[has].tolist())}
    lapsed = st.arrival[has] >= until[nearest[has]]
    period = period_starts(st.arrival[has], th)
    visits: dict[tuple[int, float], list[int]] = {}
    for r, e, late, p in zip(has.tolist(), nearest[has].tolist(), lapsed.tolist(),
                             period.tolist(), strict=True):
        if registration[e] or late:
            visits.setdefault((e, p), []).append(r)
    out = []
    for (e, p), rows in visits.items():
        issues = list(registration[e])
        expired = [r for r in rows if st.arrival[r] >= until[e]]
        if expired:
            issues.append("licence_expired")
        last = max(rows, key=lambda r: st.arrival[r])
        out.append(Warning(
            LICENCE, str(st.vehicle[last]), float(st.arrival[rows].min()),
            float(st.departure[rows].max()), float(enterprises.lon[e]), float(enterprises.lat[e]),
            severity=min(3, len(rows)),
            evidence={"enterprise": str(enterprises.id[e]), "issues": issues,
                      "visits": len(rows), "period": _period(p, th),
                      "vehicles": sorted({str(st.vehicle[r]) for r in rows}),
                      "licence_ends_at": None if np.isnan(until[e]) else
                      datetime.fromtimestamp(float(until[e]), UTC).isoformat()}))
    return out


def black_sites(stays: Sequence[Warning], th: Thresholds) -> list[Warning]:
    """Nothing-registered stays of one place period clustered on a metric grid (cells of
    `site_cell_m`, touching occupied cells merged, so a spot on a cell edge is one site); a
    cluster visited on at least `site_min_visits` distinct (vehicle, local day) pairs is a
    suspected site, severity rising with the visits. The site id is the cell of its first stay
    of the period: stable while later visits add (live sees them one by one)."""
    rows = sorted((w for w in stays if w.kind == NOTHING_STAY), key=lambda w: (w.start, w.vehicle))
    if not rows:
        return []
    lon = np.array([w.lon for w in rows])
    lat = np.array([w.lat for w in rows])
    # One scale per city (the whole degree of latitude), so a cell's id never moves.
    kx = M_PER_DEG_LON_EQ * float(np.cos(np.radians(np.round(np.median(lat)))))
    ix = np.floor(lon * kx / th.site_cell_m).astype(np.int64)
    iy = np.floor(lat * M_PER_DEG_LAT / th.site_cell_m).astype(np.int64)
    period = period_starts(np.array([w.start for w in rows]), th)
    cells = list(zip(period.tolist(), ix.tolist(), iy.tolist(), strict=True))
    parent: dict[tuple[float, int, int], tuple[float, int, int]] = {c: c for c in cells}

    def root(c: tuple[float, int, int]) -> tuple[float, int, int]:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for p, cx, cy in list(parent):
        for n in ((p, cx + 1, cy - 1), (p, cx + 1, cy), (p, cx + 1, cy + 1), (p, cx, cy + 1)):
            if n in parent:
                parent[root(n)] = root((p, cx, cy))
    groups: dict[tuple[float, int, int], list[int]] = {}
    for r, c in enumerate(cells):
        groups.setdefault(root(c), []).append(r)  # rows in time order: members[0] is the first
    tz = ZoneInfo(th.timezone)
    out = []
    for members in groups.values():
        days = {(rows[r].vehicle, datetime.fromtimestamp(rows[r].start, tz).date().isoformat())
                for r in members}
        if len(days) < th.site_min_visits:
            continue
        first = members[0]
        site = f"BW-{ix[first]}-{iy[first]}"
        out.append(Warning(
            BLACK_SITE, rows[members[-1]].vehicle, rows[first].start,
            max(rows[r].end for r in members), float(lon[members].mean()),
            float(lat[members].mean()),
            severity=min(3, 1 + (len(days) - th.site_min_visits) // 2),
            evidence={"site": site, "visits": len(days), "stays": len(members),
                      "period": _period(cells[first][0], th),
                      "vehicles": sorted({v for v, _ in days}),
                      "days": sorted({d for _, d in days}), "cell_m": th.site_cell_m}))
    return out


def trips_by_vehicle(trips: Sequence[Trip]) -> dict[str, list[Trip]]:
    """Declared trips per plate."""
    out: dict[str, list[Trip]] = {}
    for trip in trips:
        out.setdefault(trip.vehicle, []).append(trip)
    return out


def detect_all(tracks: Sequence[Track], licensed: dict[str, bool], stays: Stays,
               enterprises: Places, pois: Places, th: Thresholds, *,
               trips: Sequence[Trip] = (), sites: bool = True) -> list[Warning]:
    """Every rule over every vehicle; `tracks` must already be cleaned. `trips` are the
    declared trips (route deviation is checked only for vehicles that declared one). Without
    `sites`, no suspected black-workshop sites (live adds them up over the whole period)."""
    out = stay_warnings(stays, enterprises, pois, th)
    if sites:
        out += black_sites(out, th)
    out += licence_anomaly(stays, enterprises, th)
    by_vehicle = trips_by_vehicle(trips)
    for tr in tracks:
        dr = driving_blocks(tr, th)
        out += fatigue(tr, dr, th)
        out += night(tr, dr, th)
        out += non_operating(tr, dr, licensed.get(tr.vehicle, True))
        out += route_deviation(tr, by_vehicle.get(tr.vehicle, []), th)
    return out


def stays_from_features(features: Sequence[dict[str, Any]]) -> Stays:
    """Arrays from the spatio-temporal service's `StayPoints` GeoJSON features."""
    def ts(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    return Stays(
        vehicle=np.array([f["properties"]["subject"] for f in features], dtype=str),
        arrival=np.array([ts(f["properties"]["arrival"]) for f in features], dtype=float),
        departure=np.array([ts(f["properties"]["departure"]) for f in features], dtype=float),
        lon=np.array([f["geometry"]["coordinates"][0] for f in features], dtype=float),
        lat=np.array([f["geometry"]["coordinates"][1] for f in features], dtype=float))
