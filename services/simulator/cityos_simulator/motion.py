"""Vehicles driving along the road network, vectorised across the whole fleet.

A vehicle's life is a sequence of hops; a hop waits at its start node (traffic light, delivery)
and then drives one lattice link at a constant speed. Hops are planned for all vehicles at once
(one numpy step per hop, never one per vehicle or per fix), and positions at any times are read
off the plan with a single searchsorted.
"""

from dataclasses import dataclass

import numpy as np

from cityos_simulator.roads import KM_PER_DEG_LAT, RoadNetwork, km_per_deg_lon


@dataclass(frozen=True)
class Plan:
    """Hop h of vehicle v: wait at src[v,h] from arrive to depart, drive `link` until end.

    Times are seconds relative to an origin the caller chooses; each row is increasing and
    end[v, h] == arrive[v, h + 1].
    """

    src: np.ndarray  # int64 (V, H)
    link: np.ndarray  # int64 (V, H) directed link index into the network's CSR arrays
    arrive: np.ndarray  # float64 (V, H)
    depart: np.ndarray
    end: np.ndarray
    speed_kmh: np.ndarray  # float64 (V, H) driving speed of the hop

    @property
    def until(self) -> float:
        """Every vehicle's plan covers times up to here."""
        return float(self.end[:, -1].min())


@dataclass(frozen=True)
class Samples:
    lon: np.ndarray
    lat: np.ndarray
    speed_kmh: np.ndarray
    heading: np.ndarray


def _pick_links(net: RoadNetwork, node: np.ndarray, prev: np.ndarray | None,
                rng: np.random.Generator) -> np.ndarray:
    """A random outgoing link of each node, never straight back unless it is a dead end."""
    start = net.indptr[node]
    deg = net.indptr[node + 1] - start
    if prev is None:
        return np.asarray(start + (rng.random(len(node)) * deg).astype(np.int64))
    # Draw among deg-1 choices; if the draw is the way back, take the last link instead.
    choices = np.maximum(deg - 1, 1)
    k = (rng.random(len(node)) * choices).astype(np.int64)
    link = start + k
    back = (net.link_dst[link] == prev) & (deg > 1)
    link[back] = start[back] + deg[back] - 1
    return np.asarray(link)


def _dwell(net: RoadNetwork, node: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds spent at a node before driving on: lights at junctions, sometimes a long stop."""
    n = len(node)
    junction = net.degree[node] >= 3
    light = junction & (rng.random(n) < 0.3)
    long_stop = rng.random(n) < np.where(junction, 0.012, 0.004)
    dwell = np.where(light, rng.uniform(5.0, 60.0, n), 0.0)
    return np.asarray(np.where(long_stop, rng.uniform(120.0, 1200.0, n), dwell))


def _drive(net: RoadNetwork, link: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Speed (km/h) and seconds to drive each link: most drivers a little under the design speed."""
    speed = net.link_speed_kmh[link] * rng.uniform(0.7, 1.05, len(link))
    return speed, net.link_length_m[link] / (speed / 3.6)


def _hop_columns(net: RoadNetwork, src: np.ndarray, link: np.ndarray, arrive: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    depart = arrive + _dwell(net, src, rng)
    speed, seconds = _drive(net, link, rng)
    return src, link, arrive, depart, depart + seconds, speed


def start_plan(net: RoadNetwork, n_vehicles: int, until: float,
               rng: np.random.Generator) -> Plan:
    """Vehicles at random nodes, already under way at time 0, planned to `until`."""
    src = rng.integers(0, net.n_nodes, n_vehicles)
    link = _pick_links(net, src, None, rng)
    # Start the first hop a little before 0 so that time 0 falls inside it for everybody.
    arrive = -rng.uniform(0.0, 60.0, n_vehicles) - 1.0
    first = _hop_columns(net, src, link, arrive, rng)
    return _extend([[c] for c in first], net, until, rng)


def continue_plan(plan: Plan, net: RoadNetwork, at: float, until: float,
                  rng: np.random.Generator) -> Plan:
    """A new plan whose first hop is each vehicle's hop at time `at`, walked on to `until`."""
    hop = hop_index(plan, np.arange(len(plan.src)), np.full(len(plan.src), at))
    cols = [a.ravel()[hop] for a in (plan.src, plan.link, plan.arrive, plan.depart, plan.end,
                                      plan.speed_kmh)]
    return _extend([[c] for c in cols], net, until, rng)


def _extend(cols: list[list[np.ndarray]], net: RoadNetwork, until: float,
            rng: np.random.Generator) -> Plan:
    src, link, end = cols[0], cols[1], cols[4]
    while end[-1].min() <= until:
        node = net.link_dst[link[-1]]
        nxt = _pick_links(net, node, src[-1], rng)
        for col, value in zip(cols, _hop_columns(net, node, nxt, end[-1], rng), strict=True):
            col.append(value)
    s, lk, a, d, e, sp = (np.stack(c, axis=1) for c in cols)
    return Plan(s, lk, a, d, e, sp)


def hop_index(plan: Plan, vehicle: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Flat index (v * H + h) of the hop each (vehicle, time) falls in.

    Rows are shifted apart by more than the plan's span so that the whole matrix becomes one
    sorted array and a single searchsorted answers for every vehicle at once.
    """
    base = float(plan.arrive[:, 0].min())
    span = float(plan.end.max()) - base + 1.0
    rows = np.arange(len(plan.end), dtype=np.float64)[:, None] * span
    flat_end = ((plan.end - base) + rows).ravel()
    key = (t - base) + vehicle * span
    hop = np.searchsorted(flat_end, key, side="right")
    # Clamp to the row: a time outside a row's plan (never asked for) stays in that row.
    width = plan.end.shape[1]
    return np.asarray(np.clip(hop, vehicle * width, vehicle * width + width - 1))


def sample(plan: Plan, net: RoadNetwork, vehicle: np.ndarray, t: np.ndarray,
           rng: np.random.Generator, gps_noise_m: float = 5.0) -> Samples:
    """Where each vehicle is at time t, as its GPS unit reports it (with noise)."""
    hop = hop_index(plan, vehicle, t)
    link = plan.link.ravel()[hop]
    src = plan.src.ravel()[hop]
    dst = net.link_dst[link]
    depart = plan.depart.ravel()[hop]
    duration = plan.end.ravel()[hop] - depart
    frac = np.clip((t - depart) / duration, 0.0, 1.0)
    moving = t >= depart
    lon = net.node_lon[src] + frac * (net.node_lon[dst] - net.node_lon[src])
    lat = net.node_lat[src] + frac * (net.node_lat[dst] - net.node_lat[src])

    n = len(t)
    if gps_noise_m > 0 and n:
        lon = lon + rng.normal(0.0, gps_noise_m, n) / (1000 * km_per_deg_lon(float(lat.mean())))
        lat = lat + rng.normal(0.0, gps_noise_m, n) / (1000 * KM_PER_DEG_LAT)
    speed = np.where(moving, plan.speed_kmh.ravel()[hop] + rng.normal(0.0, 1.5, n), 0.0)
    # A waiting vehicle still faces the way it came in.
    first = hop % plan.end.shape[1] == 0
    came_in = plan.link.ravel()[np.where(first, hop, hop - 1)]
    heading = np.where(moving | first, net.link_heading[link], net.link_heading[came_in])
    heading = (heading + np.where(moving, rng.normal(0.0, 2.0, n), 0.0)) % 360.0
    return Samples(lon, lat, np.maximum(speed, 0.0), heading)
