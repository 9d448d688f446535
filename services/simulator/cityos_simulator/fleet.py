"""A live fleet: vehicles keep driving between ticks and report at their own GPS interval."""

import numpy as np

from cityos_simulator import motion
from cityos_simulator.fixes import Fixes
from cityos_simulator.generator import PlateStyle, make_plates
from cityos_simulator.roads import RoadNetwork


class Fleet:
    """Call `advance(now)` with increasing epoch seconds; get the fixes reported since last call.

    Routes are planned `horizon_s` ahead and re-planned from each vehicle's current hop when the
    plan runs out, so memory stays bounded however long the simulator runs.
    """

    def __init__(self, network: RoadNetwork, n_vehicles: int, start: float,
                 interval_s: float = 10.0, seed: int = 0, plate_style: PlateStyle = "ascii",
                 horizon_s: float = 900.0) -> None:
        self.network = network
        self.interval_s = interval_s
        self.horizon_s = horizon_s
        self.plates = make_plates(n_vehicles, plate_style)
        self._rng = np.random.default_rng(seed)
        self._origin = start  # plan times are seconds after this, to keep float64 precise
        self._plan = motion.start_plan(network, n_vehicles, horizon_s, self._rng)
        self._last = 0.0
        # Devices are not synchronised: each reports at its own phase.
        self._next = self._rng.uniform(0.0, interval_s, n_vehicles)

    def __len__(self) -> int:
        return len(self.plates)

    def advance(self, now: float) -> Fixes:
        """Fixes with times in (previous now, now], ordered by time."""
        t_now = now - self._origin
        if t_now <= self._last:
            return self._fixes(np.zeros(0, dtype=np.int64), np.zeros(0))
        self._replan(t_now)
        counts = np.maximum(np.floor((t_now - self._next) / self.interval_s).astype(np.int64) + 1, 0)
        vehicle = np.repeat(np.arange(len(self.plates)), counts)
        # k-th report of a vehicle in this window: its next due time plus k intervals.
        first_of_vehicle = np.repeat(np.cumsum(counts) - counts, counts)
        k = np.arange(len(vehicle)) - first_of_vehicle
        t = self._next[vehicle] + k * self.interval_s
        self._next += counts * self.interval_s
        self._last = t_now
        order = np.argsort(t, kind="stable")
        return self._fixes(vehicle[order], t[order])

    def positions(self, now: float) -> Fixes:
        """Where every vehicle is at `now` (increasing), as a gateway polling its devices sees
        them; use either this or `advance`."""
        t_now = max(now - self._origin, self._last)
        self._replan(t_now)
        self._last = t_now
        n = len(self.plates)
        return self._fixes(np.arange(n), np.full(n, t_now))

    def _replan(self, t_now: float) -> None:
        if self._plan.until <= t_now:
            self._plan = motion.continue_plan(self._plan, self.network, self._last,
                                              t_now + self.horizon_s, self._rng)

    def _fixes(self, vehicle: np.ndarray, t: np.ndarray) -> Fixes:
        where = motion.sample(self._plan, self.network, vehicle, t, self._rng)
        return Fixes(self.plates[vehicle], self._origin + t, where.lon, where.lat,
                     where.speed_kmh, where.heading, np.zeros(len(t), dtype=np.uint8))
