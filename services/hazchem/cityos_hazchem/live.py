"""Live warnings: the rules re-run, as fixes arrive, for the vehicles each batch touched.

A durable JetStream consumer per hazardous-vehicle GPS dataset reads the public normalised
observations (`obs.<dataset>`). Each vehicle keeps the fixes of its last `window_h` hours (raw,
sorted, duplicate times dropped): enough for the 4-h driving limit and the rest before it, the
night window and the stays. After each batch, the touched vehicles' windows are cleaned and run
through `rules.detect_all` with stays from `stays.detect` (the compute endpoint's definition and
parameters, run here so a stay warns while the vehicle is still there), and every warning not
seen before is posted by `posting.post_warnings`, as the compute endpoint posts: same idempotency
keys and the same episode check, so live and re-computed warnings never double. The batch is
acknowledged only after that bookkeeping committed. Declared trips come with the registered
places; a route deviation gets where to intercept it (`intercept.intercept`, as the compute's).

Noise: duplicates are dropped by time, late fixes are merged in time order (a fix older than the
window is too late to change a live warning and is only counted: the window compute still sees
it), outliers are dropped by `rules.clean` over the whole window each time, since whether a fix
is an outlier depends on the fixes on both sides of it. An episode that starts at the window's
first fix may have begun before it (its start unknown), so it is not warned: it was warned when
it began, while inside the window.

Place warnings (licence anomalies, suspected black-workshop sites) are one per place and place
period (`Thresholds.place_period_days`, a week by default), as the rules name them over any
window: live remembers the keys it posted (`PlaceMemory`) and a later window seeing the same
place in that period adds nothing. Licence anomalies need only the windows' stays; suspected
sites add up nothing-registered stays over days, so live keeps those of the current and the
previous period, as posted.

Restart: state is rebuilt from the observation stream itself (JetStream keeps 7 days): the last
`replay_h` hours by stored time, up to what the durable consumer had delivered, without posting;
the durable then resumes, redelivering what was not acknowledged. No other service needs to be up
for it, and nothing more is persisted than the posted warnings: the place keys and the
nothing-registered stays of `PlaceMemory` are read back from them. A first start (no durable yet)
reads from `window_h` back by stored time, not the stream's 7 days; if older fixes are held, an
episode starting at a vehicle's first fix read may have begun before and is not warned.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import nats
import numpy as np
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Histogram

from cityos_contracts.records import ObservationBatch
from cityos_contracts.subjects import OBSERVATIONS, STREAMS
from cityos_hazchem import rules, stays
from cityos_hazchem.intercept import Interception
from cityos_hazchem.posting import post_warnings
from cityos_hazchem.reports import idempotency_key
from cityos_hazchem.risk_api import TokenSource
from cityos_hazchem.rules import Places, Stays, Thresholds, Track, Trip
from cityos_kit.bus import Bus, Delivery
from cityos_kit.config import from_env
from cityos_kit.telemetry import logger

log = logger("cityos.hazchem.live")
PREFIX = "CITYOS_HAZCHEM_"
OBS_STREAM = next(s for s in STREAMS if OBSERVATIONS in s.subjects)

LAG = Histogram("hazchem_live_warning_lag_seconds",
                "From a batch's arrival on the stream to the post of the warning it raised",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 120))
FIXES = Counter("hazchem_live_fixes_total", "Fixes taken into the live windows")
TOO_LATE = Counter("hazchem_live_fixes_too_late_total",
                   "Fixes older than their vehicle's live window (left to the window compute)")
POSTED = Counter("hazchem_live_warnings_posted_total", "Live warnings posted", ["kind"])



@dataclass(frozen=True)
class Registered:
    """What the rules need besides the fixes, from registered entity datasets."""

    enterprises: Places
    pois: Places
    licensed: dict[str, bool]  # plate -> licensed to operate (unregistered: licensed)
    trips: dict[str, list[Trip]] = field(default_factory=dict)  # plate -> declared trips

    @staticmethod
    def empty() -> "Registered":
        return Registered(Places.empty(), Places.empty(), {})

    def trips_during(self, vehicle: str, start: float, end: float) -> list[Trip]:
        return [t for t in self.trips.get(vehicle, ()) if t.start <= end and t.end >= start]

    def trips_after(self, t: float) -> "Registered":
        """Without the trips that ended before `t` (the listing returns every declared one)."""
        trips = {v: kept for v, ts in self.trips.items() if (kept := [x for x in ts if x.end >= t])}
        return replace(self, trips=trips)


RegistrySource = Callable[[], Awaitable[Registered]]
# The compute endpoint's readers: (datasets, at, bearer token, enterprises?) -> places,
# (vehicle datasets, at, bearer token) -> licensed, (trip datasets, at, token) -> trips.
PlacesFetch = Callable[[list[str], datetime, str | None, bool], Awaitable[Places]]
LicenceFetch = Callable[[list[str], datetime, str | None], Awaitable[dict[str, bool]]]
TripsFetch = Callable[[list[str], datetime, str | None], Awaitable[list[Trip]]]
# A new route deviation with where it can be intercepted (`intercept.intercept`).
Enrich = Callable[[rules.Warning], Awaitable[rules.Warning]]


@dataclass(frozen=True)
class LiveSettings:
    """`CITYOS_HAZCHEM_*`: which datasets, and how much to keep. Lists are comma-separated."""

    gps_datasets: str = ""  # hazardous-vehicle GPS; empty: no live warnings
    enterprise_datasets: str = ""
    poi_datasets: str = ""
    vehicle_datasets: str = ""  # registered vehicles, attribute `licensed`
    trip_datasets: str = ""  # declared trips (route deviation); empty: not checked live
    # Route deviations: the road network of the reachable area, and who can intercept.
    road_network: str = ""  # empty: no reachable area
    reach_minutes: float = 5.0
    staff_dataset: str = "field_staff"
    police_unit: str = "JJZD"
    intercept_timeout_s: float = 10.0  # per query; then the warning goes out with the reason
    unlicensed: str = ""  # overrides them: these plates are not licensed to operate
    window_h: float = 6.0  # > 4 h driving + 20 min rest, the night window, a stay
    replay_h: float = 24.0  # rebuilt from the stream on restart
    registry_refresh_s: float = 300.0  # enterprises, POIs, vehicles read again
    batch: int = 64  # observation batches per round (a round runs each touched vehicle once)

    @staticmethod
    def from_env(env: dict[str, str] | None = None, **overrides: Any) -> "LiveSettings":
        return from_env(LiveSettings, prefix=PREFIX, env=env, **overrides)

    @staticmethod
    def split(value: str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()]

    def interception(self) -> Interception:
        return Interception(self.road_network or None, self.reach_minutes, self.staff_dataset,
                            self.police_unit, self.intercept_timeout_s)


def thresholds_from_env(env: dict[str, str] | None = None) -> Thresholds:
    """The rules' thresholds, `CITYOS_HAZCHEM_<FIELD>` (e.g. CITYOS_HAZCHEM_NIGHT_START=01:00)."""
    return from_env(Thresholds, prefix=PREFIX, env=env)


class Window:
    """One vehicle's recent fixes: sorted by time, one per time."""

    __slots__ = ("changed", "horizon", "lat", "lon", "t")

    def __init__(self) -> None:
        self.t = self.lon = self.lat = np.zeros(0)
        # An episode starting at or before this may have begun earlier: not warned.
        self.horizon = -np.inf
        self.changed = np.inf  # the earliest fix added since the rules last ran

    def add(self, t: np.ndarray, lon: np.ndarray, lat: np.ndarray, keep_s: float) -> int:
        """Merge fixes in; returns how many were too late (older than the window already was).
        Nothing is trimmed until the rules ran (`trim`): a round may span more than the window
        when catching up."""
        floor = float(self.t[-1]) - keep_s if len(self.t) else -np.inf
        fresh = t >= floor
        if fresh.any():
            self.changed = min(self.changed, float(t[fresh].min()))
        t_all = np.concatenate((self.t, t[fresh]))
        order = np.argsort(t_all, kind="stable")  # existing fixes first among equal times
        t_all = t_all[order]
        keep = np.ones(len(t_all), dtype=bool)
        keep[1:] = np.diff(t_all) > 0
        self.t = t_all[keep]
        self.lon = np.concatenate((self.lon, lon[fresh]))[order][keep]
        self.lat = np.concatenate((self.lat, lat[fresh]))[order][keep]
        return int((~fresh).sum())

    def trim(self, keep_s: float) -> bool:
        """Keep the last `keep_s` seconds once the window holds half as much again (trimming at
        every fix would walk a parked vehicle's stay from the window's start each time); an
        episode starting at the first fix kept may have begun before it. True if trimmed."""
        if not len(self.t) or self.t[-1] - self.t[0] <= 1.5 * keep_s:
            return False
        i = int(np.searchsorted(self.t, float(self.t[-1]) - keep_s))
        self.t, self.lon, self.lat = self.t[i:], self.lon[i:], self.lat[i:]
        self.horizon = max(self.horizon, float(self.t[0]))
        return True

    def track(self, vehicle: str) -> Track:
        return Track(vehicle, self.t, self.lon, self.lat)


@dataclass
class Episodes:
    """Warnings already posted (or found posted) per vehicle and kind, as time spans: the
    database is the truth, this saves asking it again for every re-run."""

    spans: dict[tuple[str, str], list[list[float]]] = field(default_factory=dict)

    def known(self, w: rules.Warning) -> bool:
        for span in self.spans.get((w.vehicle, w.kind), []):
            if span[0] <= w.end and w.start <= span[1]:
                span[0], span[1] = min(span[0], w.start), max(span[1], w.end)
                return True
        return False

    def add(self, w: rules.Warning) -> None:
        self.spans.setdefault((w.vehicle, w.kind), []).append([w.start, w.end])

    def forget_before(self, vehicle: str, t: float) -> None:
        for kind in rules.KINDS:
            spans = self.spans.get((vehicle, kind))
            if spans:
                spans[:] = [s for s in spans if s[1] >= t]


@dataclass
class PlaceMemory:
    """What the place rules need beyond the vehicles' windows: the keys of the place warnings
    posted (one per place and period: seen again, nothing is added) and the nothing-registered
    stays of the current and previous place period (suspected sites add them up across days).
    Read back from the posted warnings on start."""

    keys: set[str] = field(default_factory=set)
    nothing: dict[str, list[rules.Warning]] = field(default_factory=dict)  # per vehicle
    changed: bool = False

    async def load(self, pool: asyncpg.Pool, th: Thresholds) -> None:
        async with pool.acquire() as conn:
            self.keys |= {r["key"] for r in await conn.fetch(
                "SELECT key FROM posted_warnings WHERE kind = ANY($1::text[])",
                list(rules.PLACE_KINDS))}
            rows = await conn.fetch(
                "SELECT vehicle, starts_at, ends_at, lon, lat FROM posted_warnings"
                " WHERE kind = $1 AND lon IS NOT NULL AND starts_at >= (SELECT max(starts_at)"
                "  FROM posted_warnings WHERE kind = $1) - make_interval(days => $2)",
                rules.NOTHING_STAY, 2 * th.place_period_days)
        for r in rows:
            self.stay(rules.Warning(rules.NOTHING_STAY, r["vehicle"], r["starts_at"].timestamp(),
                                    r["ends_at"].timestamp(), r["lon"], r["lat"], 1))

    def stay(self, w: rules.Warning) -> None:
        """A nothing-registered stay, new or seen again (grown, or its start moved by a late
        fix: it overlaps the one kept, which it replaces)."""
        kept = self.nothing.setdefault(w.vehicle, [])
        for i, k in enumerate(kept):
            if k.start <= w.end and w.start <= k.end:
                if (k.start, k.lon, k.lat) != (w.start, w.lon, w.lat):
                    self.changed = True
                kept[i] = w
                return
        kept.append(w)
        self.changed = True

    def sites(self, th: Thresholds) -> list[rules.Warning]:
        """The suspected sites of the stays kept (after a change), older periods forgotten."""
        if not self.changed:
            return []
        self.changed = False
        every = [w for kept in self.nothing.values() for w in kept]
        if not every:
            return []
        latest = rules.period_starts(np.array([max(w.start for w in every)]), th)[0]
        since = latest - th.place_period_days * 86400.0 - 7200.0  # the previous period
        for v, kept in list(self.nothing.items()):
            kept[:] = [w for w in kept if w.start >= since]
            if not kept:
                del self.nothing[v]
        return rules.black_sites([w for kept in self.nothing.values() for w in kept], th)


def _columns(batches: Sequence[ObservationBatch]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                           np.ndarray, np.ndarray]:
    """Subjects, epoch seconds, lon, lat of all rows, and each row's batch index."""
    subj = np.array([s for b in batches for s in b.subject], dtype=str)
    t = np.array([d.timestamp() for b in batches for d in b.ts], dtype=float)
    lon = np.array([x for b in batches for x in b.lon], dtype=float)
    lat = np.array([y for b in batches for y in b.lat], dtype=float)
    which = np.repeat(np.arange(len(batches)), [len(b.subject) for b in batches])
    return subj, t, lon, lat, which


class LiveWarnings:
    """Live warnings of one GPS dataset."""

    def __init__(self, dataset: str, pool: asyncpg.Pool, bus: Bus, options: LiveSettings,
                 th: Thresholds, registry: RegistrySource | None,
                 enrich: Enrich | None = None) -> None:
        self.dataset, self.pool, self.bus, self.options, self.th = dataset, pool, bus, options, th
        self.registry_source = registry
        self.enrich = enrich
        self.keep_s = options.window_h * 3600.0
        self.unlicensed = set(LiveSettings.split(options.unlicensed))
        self.windows: dict[str, Window] = {}
        self.walks: dict[str, stays.Walk] = {}
        self.stays: dict[str, Stays] = {}  # per vehicle, as of its window's last change
        self.episodes = Episodes()
        self.places = PlaceMemory()
        self.registry: Registered | None = None if registry else Registered.empty()
        self.registry_at = -np.inf
        # After a partial rebuild, a vehicle's history before its first fix here is unknown.
        self.history_complete = True
        # (when, seconds) per posted warning, as the LAG histogram has them
        self.lags: list[tuple[float, float]] = []
        self.posted = 0

    @property
    def durable(self) -> str:
        return f"hazchem-live-{self.dataset}"

    @property
    def subject(self) -> str:
        return OBSERVATIONS.format(dataset=self.dataset)

    async def start(self) -> None:
        # A first start reads back only the window the rules need, not the stream's 7 days.
        first = datetime.now(UTC) - timedelta(hours=self.options.window_h)
        await self.places.load(self.pool, self.th)
        await self.rebuild(first)
        self.bus.consume_batches(OBS_STREAM, self.durable, ObservationBatch, self.handle,
                                 filter_subject=self.subject, batch=self.options.batch,
                                 start_time=first)

    # -- state ----------------------------------------------------------------------------
    def take(self, batches: Sequence[ObservationBatch]) -> dict[str, np.ndarray]:
        """Merge the fixes into the windows; returns, per touched vehicle, the row indices."""
        subj, t, lon, lat, which = _columns(batches)
        order = np.argsort(subj, kind="stable")
        names, starts = np.unique(subj[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        touched: dict[str, np.ndarray] = {}
        late = 0
        for name, a, b in zip(names.tolist(), starts.tolist(), ends.tolist(), strict=True):
            rows = order[a:b]
            w = self.windows.get(name)
            if w is None:
                w = self.windows[name] = Window()
                if not self.history_complete:
                    w.horizon = float(t[rows].min())
            late += w.add(t[rows], lon[rows], lat[rows], self.keep_s)
            touched[name] = which[rows]
        FIXES.inc(len(t))
        TOO_LATE.inc(late)
        return touched

    async def rebuild(self, first: datetime) -> int:
        """Windows from the stream's last `replay_h` hours, up to what the durable consumer had
        delivered before (the rest it delivers again). Nothing is posted. Returns fixes read.
        A first start (no durable yet) reads nothing here: its durable starts at `first`."""
        js = self.bus.js
        stream = self.bus.stream_name(OBS_STREAM)
        try:
            info = await js.consumer_info(stream, self.durable)
            last = info.delivered.stream_seq or 0
            if last == 0:
                return 0
            since = datetime.now(UTC) - timedelta(hours=self.options.replay_h)
        except NotFoundError:
            last, since = 0, first
        full = self.bus.subject(self.subject)
        held = (await js.stream_info(stream, subjects_filter=full)).state.subjects or {}
        sub = await js.pull_subscribe(
            full, durable=None, stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                  opt_start_time=since,
                                  ack_policy=AckPolicy.NONE))
        # Replaying every message the stream holds of this dataset: no history is missing.
        self.history_complete = ((await sub.consumer_info()).num_pending or 0) >= held.get(full, 0)
        if last == 0:
            await sub.unsubscribe()
            return 0
        read = 0
        decoder = msgspec.json.Decoder(ObservationBatch)
        try:
            done = False
            while not done:
                try:
                    msgs = await sub.fetch(256, timeout=1)
                except (nats.errors.TimeoutError, TimeoutError):
                    break
                batches = []
                for m in msgs:
                    if m.metadata.sequence.stream > last:
                        done = True
                        break
                    batches.append(decoder.decode(m.data))
                if batches:
                    for v in self.take(batches):
                        self.windows[v].trim(self.keep_s)
                    read += sum(len(b) for b in batches)
        finally:
            await sub.unsubscribe()
        if not self.history_complete:
            for w in self.windows.values():
                if len(w.t):
                    w.horizon = max(w.horizon, float(w.t[0]))
        log.info("live_rebuilt", dataset=self.dataset, fixes=read, vehicles=len(self.windows),
                 complete=self.history_complete)
        return read

    async def _refresh_registry(self) -> None:
        if self.registry_source is None or time.monotonic() - self.registry_at < \
                self.options.registry_refresh_s:
            return
        try:
            reg = await self.registry_source()
            # Trips that ended before every live window: nothing left to check them against.
            latest = max((float(w.t[-1]) for w in self.windows.values() if len(w.t)),
                         default=-np.inf)
            self.registry = reg.trips_after(latest - 1.5 * self.keep_s - 3600.0)
            self.registry_at = time.monotonic()
        except Exception as exc:  # keep the last; the first time, the rules below wait for it
            log.warning("registry_unavailable", dataset=self.dataset, error=repr(exc))
            self.registry_at = time.monotonic() - self.options.registry_refresh_s + 10.0

    # -- rules ----------------------------------------------------------------------------
    def detect(self, vehicles: Sequence[str]) -> list[rules.Warning]:
        """New warnings after these vehicles' windows changed (not known posted, not cut by the
        window). Stays of every vehicle take part: some rules (licence anomalies, suspected
        black-workshop sites) look across vehicles."""
        # Until the registered datasets are in, every long stay would look like "nothing
        # registered" and no vehicle unlicensed: stays wait (still in the window) for them.
        reg = self.registry or Registered.empty()
        tracks = [rules.clean(self.windows[v].track(v), self.th) for v in vehicles]
        rerun, trips = [], []
        for tr in tracks:
            win = self.windows[tr.vehicle]
            # Cleaning may drop or keep the two fixes before a new one (outliers are judged by
            # both neighbours): what changed starts before them.
            i = max(0, int(np.searchsorted(tr.t, win.changed)) - 2)
            since = float(tr.t[i]) if len(tr.t) else -np.inf
            walk = self.walks.setdefault(tr.vehicle, stays.Walk())
            self.stays[tr.vehicle] = walk.update(tr, since)
            win.changed = np.inf
            # Driving rules (fatigue, night, non-operating) can only warn anew when the vehicle
            # moved (as `rules.driving_blocks` counts it) since: most fixes are parked ones.
            d = rules._metres(tr.lon[i:-1], tr.lat[i:-1], tr.lon[i + 1:], tr.lat[i + 1:])
            dt = np.maximum(np.diff(tr.t[i:]), 1.0)
            # A route deviation also grows while the vehicle stands off its route.
            during = reg.trips_during(tr.vehicle, since, float(tr.t[-1])) if len(tr.t) else []
            trips += during
            if during or ((d >= self.th.stationary_m) & (d / dt >= self.th.stationary_mps)).any():
                rerun.append(tr)
        found = stays.concat(list(self.stays.values()) if self.registry else [])
        licensed = {v: reg.licensed.get(v, True) and v not in self.unlicensed for v in vehicles}
        out = []
        for w in rules.detect_all(rerun, licensed, found, reg.enterprises, reg.pois, self.th,
                                  trips=trips, sites=False):
            if w.kind in rules.PLACE_KINDS:  # named by place and period: no cut applies
                if idempotency_key(w) not in self.places.keys:
                    out.append(w)
                continue
            cut = self.windows[w.vehicle].horizon if w.vehicle in self.windows else -np.inf
            if w.start <= cut:
                continue
            if w.kind == rules.NOTHING_STAY:
                self.places.stay(w)
            if not self.episodes.known(w):
                out.append(w)
        # Suspected sites over the period's nothing-registered stays, not only the windows'.
        out += [w for w in self.places.sites(self.th)
                if idempotency_key(w) not in self.places.keys]
        return out

    async def handle(self, deliveries: list[Delivery[ObservationBatch]]) -> None:
        await self._refresh_registry()
        touched = self.take([d.message for d in deliveries])
        arrived = [d.msg.metadata.timestamp.timestamp() if d.msg.metadata.timestamp
                   else time.time() for d in deliveries]
        for w in self.detect(sorted(touched)):
            # Where to intercept, asked before posting (the post may still find the episode
            # posted, e.g. after a restart: a wasted query, never a second warning).
            posted = [await self.enrich(w)] if self.enrich and w.kind == rules.ROUTE_DEVIATION \
                else [w]
            if await post_warnings(self.pool, self.bus, posted):
                # From the earliest batch of this round with the vehicle in it: an upper bound
                # of the lag from the fix that completed the warning's evidence.
                rows = touched.get(w.vehicle)
                lag = time.time() - (min(arrived[i] for i in rows.tolist()) if rows is not None
                                     else min(arrived))
                LAG.observe(lag)
                self.lags.append((time.time(), lag))
                POSTED.labels(w.kind).inc()
                self.posted += 1
            if w.kind in rules.PLACE_KINDS:
                self.places.keys.add(idempotency_key(w))
            else:
                self.episodes.add(w)
        for v in touched:
            win = self.windows[v]
            if win.trim(self.keep_s):
                self.episodes.forget_before(v, win.horizon)
                self.walks[v].forget_before(win.horizon)


async def no_token() -> None:
    """Without service credentials of its own, hazchem calls with none (the upstream's own
    identity, e.g. in tests)."""
    return None


def registry_from(places: PlacesFetch, licences: LicenceFetch, trips: TripsFetch,
                  options: LiveSettings, token: TokenSource) -> RegistrySource | None:
    """The configured enterprise, POI, vehicle and trip datasets as of now, read with hazchem's
    own service token."""
    enterprises = LiveSettings.split(options.enterprise_datasets)
    pois = LiveSettings.split(options.poi_datasets)
    vehicles = LiveSettings.split(options.vehicle_datasets)
    declared = LiveSettings.split(options.trip_datasets)
    if not enterprises and not pois and not vehicles and not declared:
        return None

    async def load() -> Registered:
        tok = await token()
        now = datetime.now(UTC)
        return Registered(await places(enterprises, now, tok, True),
                          await places(pois, now, tok, False),
                          await licences(vehicles, now, tok) if vehicles else {},
                          rules.trips_by_vehicle(await trips(declared, now, tok))
                          if declared else {})

    return load


async def start(pool: asyncpg.Pool, bus: Bus, th: Thresholds, registry: RegistrySource | None,
                options: LiveSettings | None = None, enrich: Enrich | None = None
                ) -> list[LiveWarnings]:
    """Live warnings for each configured dataset (none when CITYOS_HAZCHEM_GPS_DATASETS is
    empty), rebuilt and consuming; their consumers run on the bus's tasks and stop with it."""
    options = options or LiveSettings.from_env()
    lives = [LiveWarnings(ds, pool, bus, options, th, registry, enrich)
             for ds in LiveSettings.split(options.gps_datasets)]
    for lw in lives:
        await lw.start()
    return lives
