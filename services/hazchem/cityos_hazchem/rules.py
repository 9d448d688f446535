"""Warning rules over hazardous-goods vehicle tracks: pure, vectorised numpy.

Inputs are what the platform's public APIs return: a vehicle's fixes (the spatio-temporal
range query), its stay points (the stay-point query, `StayPoints` features turned into arrays by
`stays_from_features`), the enterprises and POIs (registered datasets). Nothing here touches
the network or the database, so every rule is testable and re-computable over any window.

Times are epoch seconds (UTC); local-time rules use `Thresholds.timezone`.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0

CLOSED_STAY = "closed_enterprise_stay"
NOTHING_STAY = "nothing_registered_stay"
FATIGUE = "fatigue_driving"
NIGHT = "night_driving"
NON_OPERATING = "non_operating_vehicle"
KINDS = (CLOSED_STAY, NOTHING_STAY, FATIGUE, NIGHT, NON_OPERATING)


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

    def __len__(self) -> int:
        return len(self.id)

    @staticmethod
    def empty() -> "Places":
        e = np.zeros(0)
        s = np.zeros(0, dtype=str)
        return Places(s, e, e, s, s, e)


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


def _status_at(pl: Places, t: Floats) -> npt.NDArray[np.str_]:
    """(stays x places) status each place had at each stay's arrival."""
    since = np.where(np.isnan(pl.status_since), -np.inf, pl.status_since)
    return np.where(t[:, None] >= since[None, :], pl.status[None, :], "operating")


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
    hits: list[tuple[int, int, float]] = []  # stay row, enterprise, distance
    if len(enterprises):
        de = _metres(lon[:, None], lat[:, None], enterprises.lon[None, :], enterprises.lat[None, :])
        near_any |= (de <= th.nothing_radius_m).any(axis=1)
        closed = np.isin(_status_at(enterprises, arr), ("closed", "suspended"))
        within = de <= th.enterprise_radius_m
        # The nearest enterprise within the radius decides (an operating one next door wins).
        masked = np.where(within, de, np.inf)
        nearest = np.argmin(masked, axis=1)
        has = np.isfinite(masked[np.arange(len(idx)), nearest])
        for r in np.flatnonzero(has & closed[np.arange(len(idx)), nearest]).tolist():
            hits.append((r, int(nearest[r]), float(de[r, nearest[r]])))
    if len(pois):
        dp = _metres(lon[:, None], lat[:, None], pois.lon[None, :], pois.lat[None, :])
        near_any |= (dp <= th.nothing_radius_m).any(axis=1)
    visits: dict[int, int] = {}
    for r, e, dist in sorted(hits, key=lambda h: arr[h[0]]):
        visits[e] = visits.get(e, 0) + 1
        k = int(idx[r])
        status = str(_status_at(enterprises, arr[r:r + 1])[0, e])
        out.append(Warning(CLOSED_STAY, str(st.vehicle[k]), float(st.arrival[k]),
                           float(st.departure[k]), float(st.lon[k]), float(st.lat[k]),
                           severity=min(3, visits[e]),
                           evidence={"enterprise": str(enterprises.id[e]), "status": status,
                                     "distance_m": round(dist, 1), "visit": visits[e],
                                     "stay_s": float(st.departure[k] - st.arrival[k])}))
    for r in np.flatnonzero(~near_any).tolist():
        k = int(idx[r])
        out.append(Warning(NOTHING_STAY, str(st.vehicle[k]), float(st.arrival[k]),
                           float(st.departure[k]), float(st.lon[k]), float(st.lat[k]), severity=1,
                           evidence={"radius_m": th.nothing_radius_m,
                                     "stay_s": float(st.departure[k] - st.arrival[k])}))
    return out


def detect_all(tracks: Sequence[Track], licensed: dict[str, bool], stays: Stays,
               enterprises: Places, pois: Places, th: Thresholds) -> list[Warning]:
    """Every rule over every vehicle; `tracks` must already be cleaned."""
    out = stay_warnings(stays, enterprises, pois, th)
    for tr in tracks:
        dr = driving_blocks(tr, th)
        out += fatigue(tr, dr, th)
        out += night(tr, dr, th)
        out += non_operating(tr, dr, licensed.get(tr.vehicle, True))
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
