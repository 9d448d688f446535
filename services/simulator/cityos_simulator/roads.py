"""A deterministic road network for the demo city: expressways, an arterial grid, local streets.

The network is laid on a lattice at half the arterial spacing: even lattice lines are arterials
(or expressways), odd lines are local streets that exist only in some cells. Every lattice link is
a straight piece, so a vehicle moving between two adjacent lattice nodes stays exactly on the
published geometry; published features merge links into segments between intersections.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from cityos_kit.city import BBox, City
from cityos_kit.config import DEFAULT_CITY_DIR

KM_PER_DEG_LAT = 110.574
EXPRESSWAY_KMH = 100.0
ARTERIAL_KMH = 60.0


def km_per_deg_lon(lat: float) -> float:
    return 111.320 * math.cos(math.radians(lat))


def division_bounds(divisions: dict[str, Any]) -> BBox:
    """Tight bounds of the divisions (City.bbox adds a margin we do not want roads in)."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], (int, float)):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        else:
            for c in coords:
                walk(c)

    for feature in divisions["features"]:
        walk(feature["geometry"]["coordinates"])
    return BBox(min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class RoadNetwork:
    """Nodes and directed links in CSR form (links of node n: indptr[n]:indptr[n+1]).

    Every undirected road link appears twice, once per direction (no road is one-way).
    """

    bounds: BBox
    node_lon: np.ndarray  # float64 (N,)
    node_lat: np.ndarray
    indptr: np.ndarray  # int64 (N+1,)
    link_dst: np.ndarray  # int64 (L,) destination node of each directed link
    link_length_m: np.ndarray  # float64 (L,)
    link_speed_kmh: np.ndarray  # float64 (L,) the road's design speed
    link_heading: np.ndarray  # float64 (L,) degrees clockwise from north
    link_feature: np.ndarray  # int64 (L,) index into `features`
    features: tuple[dict[str, Any], ...]  # GeoJSON Features, one per segment

    @property
    def n_nodes(self) -> int:
        return len(self.node_lon)

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def neighbours(self, node: int) -> list[int]:
        return [int(n) for n in self.link_dst[self.indptr[node] : self.indptr[node + 1]]]

    def graph(self) -> dict[int, list[int]]:
        """node -> neighbouring nodes, for routing and tests."""
        return {n: self.neighbours(n) for n in range(self.n_nodes)}

    def junctions(self) -> np.ndarray:
        """Nodes where three or more links meet: the intersections."""
        return np.flatnonzero(self.degree >= 3)

    def feature_collection(self) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": list(self.features)}


@dataclass(frozen=True)
class _Line:
    name: str
    road_class: str
    speed_kmh: float


def _axis(lo: float, hi: float, km_per_deg: float, spacing_km: float,
          rng: np.random.Generator) -> np.ndarray:
    """Lattice coordinates along one axis, inset from the border, with per-line irregularity."""
    inset = 0.3 / km_per_deg  # keep border roads (and GPS noise around them) inside the city
    lo, hi = lo + inset, hi - inset
    n = 2 * max(1, round((hi - lo) * km_per_deg / spacing_km))  # even: lines 0 and n arterial
    coords = np.linspace(lo, hi, n + 1)
    half = (hi - lo) / n
    jitter = rng.uniform(-0.12, 0.12, n + 1) * half  # straight lines, uneven blocks
    jitter[[0, n]] = 0.0
    return np.asarray(coords + jitter, dtype=np.float64)


def _lines(n: int, prefix: str, express_at: int, rng: np.random.Generator) -> list[_Line]:
    """Roads along one axis: index i of the lattice -> the road running along lattice line i."""
    lines = []
    for i in range(n + 1):
        if i in (0, n):
            lines.append(_Line("环城高速", "expressway", EXPRESSWAY_KMH))
        elif i == express_at:
            lines.append(_Line(f"{prefix}快速路", "expressway", EXPRESSWAY_KMH))
        elif i % 2 == 0:
            lines.append(_Line(f"{prefix}{i // 2}路", "arterial", ARTERIAL_KMH))
        else:
            speed = float(rng.choice([30.0, 40.0]))
            lines.append(_Line(f"{prefix}{(i + 1) // 2}支路", "local", speed))
    return lines


def build_network(bounds: BBox, seed: int = 0, spacing_km: float = 1.5,
                  local_share: float = 0.45) -> RoadNetwork:
    """Lay out the network inside `bounds`; the same arguments always give the same network."""
    rng = np.random.default_rng(seed)
    lat0 = (bounds.south + bounds.north) / 2
    xs = _axis(bounds.west, bounds.east, km_per_deg_lon(lat0), spacing_km, rng)
    ys = _axis(bounds.south, bounds.north, KM_PER_DEG_LAT, spacing_km, rng)
    nx, ny = len(xs) - 1, len(ys) - 1
    # N-S roads are 经 (meridian) roads, E-W roads 纬 roads, as many planned Chinese cities name them.
    verticals = _lines(nx, "经", 2 * round(nx * 2 / 6), rng)
    horizontals = _lines(ny, "纬", 2 * round(ny / 6), rng)
    # Which cells get a local street across them (E-W and N-S independently).
    local_h = rng.random((nx // 2, ny // 2)) < local_share
    local_v = rng.random((nx // 2, ny // 2)) < local_share

    def pid(i: int, j: int) -> int:
        return j * (nx + 1) + i

    links: list[tuple[int, int, _Line]] = []
    for j in range(ny + 1):
        for i in range(nx):
            if j % 2 == 0 or local_h[i // 2, j // 2]:
                links.append((pid(i, j), pid(i + 1, j), horizontals[j]))
    for i in range(nx + 1):
        for j in range(ny):
            if i % 2 == 0 or local_v[i // 2, j // 2]:
                links.append((pid(i, j), pid(i, j + 1), verticals[i]))

    lon_all = np.tile(xs, ny + 1)
    lat_all = np.repeat(ys, nx + 1)
    return _assemble(bounds, lon_all, lat_all, links)


def _assemble(bounds: BBox, lon_all: np.ndarray, lat_all: np.ndarray,
              links: list[tuple[int, int, _Line]]) -> RoadNetwork:
    # Drop lattice points no road touches and renumber the rest densely.
    used = np.unique(np.array([(a, b) for a, b, _ in links]).ravel())
    remap = np.full(len(lon_all), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    node_lon, node_lat = lon_all[used], lat_all[used]
    und = [(int(remap[a]), int(remap[b]), line) for a, b, line in links]

    adj: dict[int, list[int]] = {}
    for k, (a, b, _) in enumerate(und):
        adj.setdefault(a, []).append(k)
        adj.setdefault(b, []).append(k)
    link_feature, features = _segments(und, adj, node_lon, node_lat)

    src = np.array([a for a, _, _ in und] + [b for _, b, _ in und], dtype=np.int64)
    dst = np.array([b for _, b, _ in und] + [a for a, _, _ in und], dtype=np.int64)
    speed = np.array([line.speed_kmh for _, _, line in und] * 2, dtype=np.float64)
    feat = np.concatenate([link_feature, link_feature])
    order = np.argsort(src, kind="stable")
    src, dst, speed, feat = src[order], dst[order], speed[order], feat[order]
    length, heading = _measure(node_lon[src], node_lat[src], node_lon[dst], node_lat[dst])
    indptr = np.zeros(len(node_lon) + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=len(node_lon)), out=indptr[1:])
    return RoadNetwork(bounds, node_lon, node_lat, indptr, dst, length, speed, heading, feat,
                       tuple(features))


def _measure(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray,
             lat2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Length (m) and heading of short straight links (equirectangular: exact enough at 1 km)."""
    kx = 1000 * 111.320 * np.cos(np.radians((lat1 + lat2) / 2))
    dx = (lon2 - lon1) * kx
    dy = (lat2 - lat1) * 1000 * KM_PER_DEG_LAT
    heading = np.degrees(np.arctan2(dx, dy)) % 360.0
    return np.hypot(dx, dy), heading


def _segments(und: list[tuple[int, int, _Line]], adj: dict[int, list[int]],
              node_lon: np.ndarray, node_lat: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Merge chains of links through degree-2 nodes into one feature per road segment."""
    link_feature = np.full(len(und), -1, dtype=np.int64)
    features: list[dict[str, Any]] = []
    # Segments end at intersections, dead ends, and where one road turns into another.
    starts: Iterable[int] = sorted(
        n for n, ks in adj.items() if len(ks) != 2 or und[ks[0]][2] != und[ks[1]][2])
    for start in starts:
        for k0 in adj[start]:
            if link_feature[k0] >= 0:
                continue
            chain, nodes, node, k = [], [start], start, k0
            while True:
                chain.append(k)
                a, b, _ = und[k]
                node = b if a == node else a
                nodes.append(node)
                nxt = [x for x in adj[node] if x != k]
                if len(adj[node]) != 2 or und[nxt[0]][2] != und[k][2]:
                    break
                k = nxt[0]
            line = und[k0][2]
            idx = len(features)
            link_feature[chain] = idx
            coords = [[round(float(node_lon[n]), 6), round(float(node_lat[n]), 6)] for n in nodes]
            length, _ = _measure(node_lon[nodes[:-1]], node_lat[nodes[:-1]],
                                 node_lon[nodes[1:]], node_lat[nodes[1:]])
            features.append({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": coords},
                "properties": {
                    "road_id": f"R{idx + 1:05d}",
                    "name": line.name,
                    "class": line.road_class,
                    "speed_kmh": line.speed_kmh,
                    "oneway": False,
                    "length_m": round(float(length.sum()), 1),
                },
            })
    if (link_feature < 0).any():  # a closed loop of one road with no crossing: not on a lattice
        raise ValueError("road network has a ring without intersections")
    return link_feature, features


@cache
def load_network(city_dir: Path = DEFAULT_CITY_DIR, seed: int = 0) -> RoadNetwork:
    """The demo city's network (cached: the simulator and the generator share one)."""
    return build_network(division_bounds(City(city_dir).divisions), seed=seed)


def _in_ring(ring: Any, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Even-odd ray casting of many points against one ring."""
    xy = np.asarray(ring, dtype=np.float64)
    x1, y1 = xy[:-1, 0][:, None], xy[:-1, 1][:, None]
    x2, y2 = xy[1:, 0][:, None], xy[1:, 1][:, None]
    crosses = (y1 > lat) != (y2 > lat)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
    return np.asarray((crosses & (lon < x_at)).sum(axis=0) % 2 == 1)


def in_polygons(polygons: list[dict[str, Any]], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Which points lie in any of the GeoJSON (Multi)Polygons (holes are rings too)."""
    inside = np.zeros(len(lon), dtype=bool)
    for geometry in polygons:
        parts = (geometry["coordinates"] if geometry["type"] == "MultiPolygon"
                 else [geometry["coordinates"]])
        for rings in parts:
            odd = np.zeros(len(lon), dtype=bool)
            for ring in rings:
                odd ^= _in_ring(ring, lon, lat)
            inside |= odd
    return inside


def _largest_component(indptr: np.ndarray, dst: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The nodes of `keep`'s largest connected component, over links between kept nodes."""
    label = np.full(len(keep), -1, dtype=np.int64)
    sizes: list[int] = []
    for seed in np.flatnonzero(keep):
        if label[seed] >= 0:
            continue
        label[seed], frontier, size = len(sizes), np.array([seed]), 1
        while len(frontier):
            nxt = np.concatenate([dst[indptr[n]:indptr[n + 1]] for n in frontier])
            nxt = np.unique(nxt[keep[nxt] & (label[nxt] < 0)])
            label[nxt] = len(sizes)
            size += len(nxt)
            frontier = nxt
        sizes.append(size)
    if not sizes:
        return np.zeros(len(keep), dtype=bool)
    return np.asarray(label == int(np.argmax(sizes)))


def within(net: RoadNetwork, polygons: list[dict[str, Any]] | None,
           max_kmh: float | None = None) -> RoadNetwork:
    """The part of the network inside the polygons (all of it for None): its largest connected
    piece, so that whoever moves on it never meets a road that leads nowhere. Speeds are capped
    at `max_kmh` (patrols drive slower than the road allows). Features stay those of `net`."""
    keep = (np.ones(net.n_nodes, dtype=bool) if polygons is None
            else in_polygons(polygons, net.node_lon, net.node_lat))
    keep = _largest_component(net.indptr, net.link_dst, keep)
    if keep.sum() < 2:
        raise ValueError("no connected roads inside the division")
    src = np.repeat(np.arange(net.n_nodes), net.degree)
    links = np.flatnonzero(keep[src] & keep[net.link_dst])  # still sorted by source
    remap = np.full(net.n_nodes, -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    indptr = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
    np.cumsum(np.bincount(remap[src[links]], minlength=len(indptr) - 1), out=indptr[1:])
    speed = net.link_speed_kmh[links]
    if max_kmh is not None:
        speed = np.minimum(speed, max_kmh)
    return RoadNetwork(net.bounds, net.node_lon[keep], net.node_lat[keep], indptr,
                       remap[net.link_dst[links]], net.link_length_m[links], speed,
                       net.link_heading[links], net.link_feature[links], net.features)
