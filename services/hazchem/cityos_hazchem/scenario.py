"""A deterministic hazardous-goods scenario in the demo city, with planted anomalies and
look-alikes that must not warn, and the ground truth per subject and warning kind.

Cases (each planted on `copies` vehicles): stays at a closed enterprise (one copy visits twice,
one copy's terminal is silent for most of the stay), at an operating enterprise, at one that
closes only later that day, at a gas station, with nothing registered within 500 m (warn) and a
20-minute one (too short); 4.5 h of driving with red-light stops (warn) vs 3.5 h + 25-min rest
(+ 3.5 h; one copy rests with the terminal silent); night driving 02:30-03:30 local (warn) vs
01:00-01:55; trips by a vehicle not licensed to operate (warn); a declared trip left for ~10
min at 3 km (warn; one copy's terminal silent for 3 min of it) vs a 300 m detour with a
red-light stop on it and a 1.5 km excursion of 2 min; enterprises receiving vehicles with an
expired licence, a malformed credit code or one shared with another enterprise (warn) vs a
licence renewed or valid through the day of the visit; a spot with nothing registered visited
by 3 vehicles on 3 days (a suspected black workshop; 5 on copy 0) vs a spot visited twice and
one visited 3 times in a day by one vehicle.
Noise on every track: ~2% duplicate fixes, shuffled order (late fixes), and a wild outlier on
every third vehicle. `truth` is per subject: the vehicle, the enterprise (licence) or the
planted site name (`sites` holds where each is).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from cityos_hazchem import rules
from cityos_hazchem.rules import Places, Track, Trip

ORIGIN = (120.90, 32.00)
M_PER_DEG_LON = 111_320.0 * float(np.cos(np.radians(32.0)))
M_PER_DEG_LAT = 110_574.0
LOCAL = timezone(timedelta(hours=8))
DAY = datetime(2026, 6, 1, tzinfo=LOCAL)
SPEED = 11.0  # m/s, about 40 km/h
DRIVE_DT, PARK_DT = 30.0, 60.0


def at(x: float, y: float) -> tuple[float, float]:
    return ORIGIN[0] + x / M_PER_DEG_LON, ORIGIN[1] + y / M_PER_DEG_LAT


def local(h: float) -> float:
    return (DAY + timedelta(hours=h)).timestamp()


@dataclass
class Scenario:
    tracks: list[Track]
    licensed: dict[str, bool]
    enterprises: Places
    pois: Places
    truth: dict[str, set[str]] = field(default_factory=dict)  # subject -> kinds that must warn
    trips: list[Trip] = field(default_factory=list)
    sites: dict[str, tuple[float, float]] = field(default_factory=dict)  # planted site -> lon/lat


class _Builder:
    def __init__(self, t0: float, x: float, y: float, rng: np.random.Generator) -> None:
        self.t, self.x, self.y, self.rng = t0, x, y, rng
        self.ts: list[float] = [t0]
        self.xs: list[float] = [x]
        self.ys: list[float] = [y]
        self.silent: list[tuple[float, float]] = []

    def silence(self, seconds: float) -> None:
        """The terminal says nothing for the next `seconds` of what is built."""
        self.silent.append((self.t, self.t + seconds))

    def _emit(self, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        self.ts += t.tolist()
        self.xs += x.tolist()
        self.ys += y.tolist()
        self.t, self.x, self.y = float(t[-1]), float(x[-1]), float(y[-1])

    def drive(self, x: float, y: float) -> None:
        dist = float(np.hypot(x - self.x, y - self.y))
        n = max(1, int(np.ceil(dist / (SPEED * DRIVE_DT))))
        f = np.arange(1, n + 1) / n
        self._emit(self.t + f * dist / SPEED, self.x + f * (x - self.x), self.y + f * (y - self.y))

    def drive_for(self, seconds: float, loop: list[tuple[float, float]], stops: bool = True) -> None:
        """Drive round `loop` for about `seconds`, with a 90 s red-light stop every ~20 min."""
        end, k, last_stop = self.t + seconds, 0, self.t
        while self.t < end:
            self.drive(*loop[k % len(loop)])
            k += 1
            if stops and self.t - last_stop > 1200:
                self.park(90, dt=DRIVE_DT)
                last_stop = self.t

    def park(self, seconds: float, dt: float = PARK_DT, silent_s: float = 0.0) -> None:
        """Stand still (5 m jitter); with `silent_s`, the terminal says nothing for that long
        in the middle of the stay."""
        n = max(1, int(seconds // dt))
        t = self.t + np.arange(1, n + 1) * dt
        if silent_s:
            mid = self.t + (seconds - silent_s) / 2
            keep = (t < mid) | (t >= mid + silent_s)
            keep[-1] = True
            t = t[keep]
        jx, jy = self.rng.normal(0, 5, len(t)), self.rng.normal(0, 5, len(t))
        x0, y0 = self.x, self.y
        self._emit(t, x0 + jx, y0 + jy)
        self.x, self.y = x0, y0

    def track(self, vehicle: str, outlier: bool) -> Track:
        t, x, y = np.array(self.ts), np.array(self.xs), np.array(self.ys)
        quiet = np.zeros(len(t), dtype=bool)
        for a, b in self.silent:
            quiet |= (t > a) & (t < b)
        t, x, y = t[~quiet], x[~quiet], y[~quiet]
        lon, lat = ORIGIN[0] + x / M_PER_DEG_LON, ORIGIN[1] + y / M_PER_DEG_LAT
        if outlier and len(t) > 10:
            i = int(self.rng.integers(5, len(t) - 5))
            lon[i] += self.rng.choice([-1.0, 1.0]) * self.rng.uniform(0.5, 2.0)
        dup = self.rng.random(len(t)) < 0.02
        t, lon, lat = np.concatenate((t, t[dup])), np.concatenate((lon, lon[dup])), \
            np.concatenate((lat, lat[dup]))
        order = self.rng.permutation(len(t))
        return Track(vehicle, t[order], lon[order], lat[order])


def credit_code(n: int, valid: bool = True) -> str:
    """A unified social credit code for enterprise n of Nantong (320600); invalid: a typo in
    the check character."""
    head = f"91320600{n:09d}"
    check = rules.credit_check_char(head)
    if not valid:
        check = "0" if check != "0" else "1"
    return head + check


def _day_end(day: datetime) -> float:
    """A licence valid until `day` is valid through that local day."""
    return (day + timedelta(days=1)).timestamp()


def generate(copies: int = 6, seed: int = 7) -> Scenario:
    rng = np.random.default_rng(seed)
    # Places on a 4 km x 3 km lattice, so no two are within 1 km of each other.
    ent_rows: list[tuple[str, float, float, str, str, float, str, str, float]] = []
    poi_rows: list[tuple[str, float, float, str]] = []
    long_ago = local(-24 * 30)
    valid = _day_end(datetime(2028, 12, 31, tzinfo=LOCAL))

    def ent(name: str, x: float, y: float, kind: str, status: str, since: float,
            code_ok: bool = True, until: float = valid, code: str | None = None) -> None:
        ent_rows.append((name, *at(x, y), kind, status, since,
                         code or credit_code(len(ent_rows), code_ok),
                         f"苏危化经字〔2024〕{len(ent_rows):06d}", until))

    truth: dict[str, set[str]] = {}
    sites: dict[str, tuple[float, float]] = {}
    for c in range(copies):
        y = 3000.0 * c
        ent(f"E-CLOSED-{c}", 4000, y, "producer", "closed", long_ago)
        ent(f"E-SUSP-{c}", 8000, y, "storage", "suspended", long_ago)
        ent(f"E-OPER-{c}", 12000, y, "user", "operating", float("nan"))
        ent(f"E-LATER-{c}", 16000, y, "producer", "closed", local(20))
        ent(f"E-EXPIRED-{c}", -4000, y, "storage", "operating", float("nan"),
            until=_day_end(DAY - timedelta(days=1)))
        ent(f"E-LASTDAY-{c}", -4000, y + 1500, "storage", "operating", float("nan"),
            until=_day_end(DAY))
        ent(f"E-BADCODE-{c}", -12000, y, "user", "operating", float("nan"), code_ok=False)
        ent(f"E-RENEWED-{c}", -16000, y, "user", "operating", float("nan"))
        # Two enterprises under one credit code; only the visited one warns.
        ent(f"E-TWIN-{c}", 4000, y + 1500, "storage", "operating", float("nan"),
            code=credit_code(10_000 + c))
        ent(f"E-TWIN-UNVISITED-{c}", 8000, y + 1500, "storage", "operating", float("nan"),
            code=credit_code(10_000 + c))
        truth[f"E-TWIN-{c}"] = {rules.LICENCE}
        truth[f"E-EXPIRED-{c}"] = {rules.LICENCE}
        truth[f"E-BADCODE-{c}"] = {rules.LICENCE}
        poi_rows.append((f"P-GAS-{c}", *at(20000, y), "gas_station"))
        poi_rows.append((f"P-DEPOT-{c}", *at(0, y), "logistics_park"))
        sites[f"SITE-{c}"] = at(-12000, y + 1500)
        truth[f"SITE-{c}"] = {rules.BLACK_SITE}
    nowhere = [(-8000.0, 3000.0 * c + 1500.0) for c in range(copies)]

    tracks: list[Track] = []
    licensed: dict[str, bool] = {}
    trips: list[Trip] = []

    def add(name: str, b: _Builder, kinds: set[str], lic: bool = True) -> None:
        tracks.append(b.track(name, outlier=len(tracks) % 3 == 0))
        licensed[name] = lic
        truth[name] = kinds

    for c in range(copies):
        y0 = 3000.0 * c
        depot = (0.0, y0)
        loop = [(6000.0, y0), (6000.0, y0 + 2000), (0.0, y0 + 2000), depot]

        def visit(name: str, place: tuple[float, float], minutes: float, kinds: set[str],
                  start_h: float = 9.0, silent_s: float = 0.0, times: int = 1,
                  lic: bool = True, d: tuple[float, float] = depot, c: int = c) -> None:
            b = _Builder(local(start_h + 0.1 * c), *d, rng)
            for _ in range(times):
                b.drive(*place)
                b.park(minutes * 60, silent_s=silent_s)
                b.drive(*d)
                b.park(45 * 60)  # back at the depot (a logistics park) in between
            add(name, b, kinds, lic)

        visit(f"CLOSED-{c}", (4000.0, y0), 45, {rules.CLOSED_STAY},
              silent_s=30 * 60 if c == 1 else 0.0, times=2 if c == 0 else 1)
        visit(f"SUSP-{c}", (8000.0, y0), 40, {rules.CLOSED_STAY})
        visit(f"OPER-{c}", (12000.0, y0), 60, set(), silent_s=40 * 60 if c == 2 else 0.0)
        visit(f"LATER-{c}", (16000.0, y0), 50, set())  # closes at 20:00, visited in the morning
        visit(f"GAS-{c}", (20000.0, y0), 60, set())
        visit(f"NOWHERE-{c}", nowhere[c], 40, {rules.NOTHING_STAY})
        visit(f"SHORT-{c}", nowhere[c], 20, set())
        visit(f"UNLIC-{c}", (12000.0, y0), 35, {rules.NON_OPERATING}, lic=False)
        # Licences: the enterprise is the subject; the visiting vehicles warn of nothing.
        visit(f"TO-EXPIRED-{c}", (-4000.0, y0), 40, set())
        visit(f"TO-LASTDAY-{c}", (-4000.0, y0 + 1500), 40, set())
        visit(f"TO-BADCODE-{c}", (-12000.0, y0), 40, set())
        visit(f"TO-RENEWED-{c}", (-16000.0, y0), 40, set())
        visit(f"TO-TWIN-{c}", (4000.0, y0 + 1500), 40, set())
        # Black-workshop site: distinct vehicles on distinct days; look-alikes: two visits,
        # and one vehicle three times in one day.
        for k in range(5 if c == 0 else 3):
            visit(f"BW-{c}-{k}", (-12000.0, y0 + 1500), 40, {rules.NOTHING_STAY},
                  start_h=24.0 * k + 10)
        for k in range(2):
            visit(f"PAIR-{c}-{k}", (-16000.0, y0 + 1500), 40, {rules.NOTHING_STAY},
                  start_h=24.0 * k + 10)
        visit(f"REPEAT-{c}", (-18000.0, y0 + 500), 35, {rules.NOTHING_STAY}, times=3)

        # Declared trips along depot -> (6000, y0) -> (6000, y0 + 2000), with a red-light stop
        # on the route; each vehicle leaves it its own way.
        route = [depot, (6000.0, y0), (6000.0, y0 + 2000)]
        for name, detour, kinds in (
                (f"ROUTE-{c}", [(2000.0, y0 - 3000), (5000.0, y0 - 3000), (5000.0, y0)],
                 {rules.ROUTE_DEVIATION}),
                (f"DETOUR-{c}", [(1500.0, y0 - 300), (5000.0, y0 - 300), (5000.0, y0)], set()),
                (f"EXCURSION-{c}", [(3000.0, y0 - 1500), (3300.0, y0 - 1500), (3300.0, y0)],
                 set())):
            b = _Builder(local(13.0 + 0.1 * c), *depot, rng)
            start = b.t
            b.park(10 * 60)
            b.drive(1000.0, y0)
            b.park(90, dt=DRIVE_DT)  # red light
            b.drive(detour[0][0], y0)
            b.drive(*detour[0])
            if name.startswith("DETOUR"):
                b.park(90, dt=DRIVE_DT)  # a red light on the detour
            if name == "ROUTE-1":
                b.silence(180)  # the terminal is silent for part of the deviation
            for p in detour[1:]:
                b.drive(*p)
            for p in route[1:]:
                b.drive(*p)
            b.park(10 * 60)
            add(name, b, kinds)
            lon, lat = zip(*(at(*p) for p in route), strict=True)
            trips.append(Trip(f"T-{name}", name, start, b.t + 600, np.array(lon), np.array(lat)))

        b = _Builder(local(7.0), *depot, rng)
        b.drive_for(4.5 * 3600, loop)
        add(f"FATIGUE-{c}", b, {rules.FATIGUE})

        b = _Builder(local(7.0), *depot, rng)
        b.drive_for(3.5 * 3600, loop)
        b.drive(*depot)
        b.park(25 * 60, silent_s=23 * 60 if c == 3 else 0.0)
        b.drive_for(3.5 * 3600, loop)
        add(f"REST-{c}", b, set())

        b = _Builder(local(2.5), *depot, rng)
        b.drive_for(3600, loop, stops=False)
        add(f"NIGHT-{c}", b, {rules.NIGHT})

        b = _Builder(local(1.0), *depot, rng)
        b.drive_for(38 * 60, loop, stops=False)
        b.drive(*depot)  # back by about 01:55
        add(f"LATE-{c}", b, set())

    col = list(zip(*ent_rows, strict=True))
    ents = Places(np.array(col[0]), np.array(col[1], dtype=float), np.array(col[2], dtype=float),
                  np.array(col[3]), np.array(col[4]), np.array(col[5], dtype=float),
                  credit_code=np.array(col[6]), licence_no=np.array(col[7]),
                  licence_until=np.array(col[8], dtype=float))
    pois = Places(np.array([r[0] for r in poi_rows]), np.array([r[1] for r in poi_rows]),
                  np.array([r[2] for r in poi_rows]), np.array([r[3] for r in poi_rows]),
                  np.array(["operating"] * len(poi_rows)), np.full(len(poi_rows), np.nan))
    return Scenario(tracks, licensed, ents, pois, truth, trips, sites)
