"""Environmental sensors and traffic cameras of the demo city, and what they report."""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cityos_simulator.fixes import SHANGHAI_OFFSET_S, iso_times
from cityos_simulator.roads import RoadNetwork

CLIP_LABELS = ("", "traffic_jam", "street_vending", "illegal_parking", "road_debris")
CLIP_LABEL_P = (0.8, 0.08, 0.05, 0.05, 0.02)  # most clips are routine recordings


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    category: str
    lon: float
    lat: float


def _junction_names(net: RoadNetwork, node: int) -> str:
    links = range(int(net.indptr[node]), int(net.indptr[node + 1]))
    names = sorted({net.features[int(net.link_feature[k])]["properties"]["name"] for k in links})
    return "与".join(names[:2]) + ("交叉口" if len(names) > 1 else "")


def sensor_sites(net: RoadNetwork, n: int, seed: int = 0) -> list[Site]:
    """Half roadside stations next to junctions (louder, dustier), half background stations."""
    rng = np.random.default_rng(seed + 101)
    junctions = rng.choice(net.junctions(), n // 2, replace=False)
    b = net.bounds
    sites = []
    for i in range(n):
        if i < len(junctions):
            node = int(junctions[i])
            lon = float(net.node_lon[node]) + rng.uniform(-3e-4, 3e-4)
            lat = float(net.node_lat[node]) + rng.uniform(-3e-4, 3e-4)
            name, category = f"{_junction_names(net, node)}路边站", "roadside"
        else:
            lon = float(rng.uniform(b.west + 0.01, b.east - 0.01))
            lat = float(rng.uniform(b.south + 0.01, b.north - 0.01))
            name, category = f"背景监测站{i + 1:03d}", "background"
        sites.append(Site(f"ENV-{i + 1:04d}", name, category, round(lon, 6), round(lat, 6)))
    return sites


def camera_sites(net: RoadNetwork, n: int, seed: int = 0) -> list[Site]:
    """Cameras watch busy junctions: the ones where four roads meet."""
    rng = np.random.default_rng(seed + 202)
    crossings = np.flatnonzero(net.degree >= 4)
    nodes = rng.choice(crossings, min(n, len(crossings)), replace=False)
    return [Site(f"CAM-{i + 1:04d}", _junction_names(net, int(node)), "traffic_camera",
                 round(float(net.node_lon[node]), 6), round(float(net.node_lat[node]), 6))
            for i, node in enumerate(nodes)]


def site_records(sites: list[Site], id_field: str) -> list[dict[str, Any]]:
    return [{id_field: s.id, "name": s.name, "category": s.category, "lon": s.lon, "lat": s.lat}
            for s in sites]


def _diurnal(epoch: float) -> float:
    """Traffic-driven daily cycle: morning and evening peaks, a quiet night."""
    h = ((epoch + SHANGHAI_OFFSET_S) % 86400) / 3600
    return (0.75 + 0.45 * math.exp(-(((h - 8) / 2) ** 2))
            + 0.35 * math.exp(-(((h - 18.5) / 2.5) ** 2)))


class Sensors:
    """Each sensor reports PM2.5 and noise every `interval_s`; a few readings are dust spikes."""

    def __init__(self, sites: list[Site], start: float, interval_s: float = 60.0,
                 seed: int = 0) -> None:
        self.sites = sites
        self.interval_s = interval_s
        self._rng = np.random.default_rng(seed + 303)
        self._base = self._rng.uniform(20.0, 55.0, len(sites))
        self._next = start + self._rng.uniform(0.0, interval_s, len(sites))

    def advance(self, now: float) -> list[dict[str, Any]]:
        readings: list[tuple[float, int]] = []
        for i in range(len(self.sites)):  # tens of sensors: a plain loop is clearer here
            while self._next[i] <= now:
                readings.append((float(self._next[i]), i))
                self._next[i] += self.interval_s
        readings.sort()
        out = []
        stamps = iso_times(np.array([t for t, _ in readings]))
        for (t, i), stamp in zip(readings, stamps, strict=True):
            site, cycle = self.sites[i], _diurnal(t)
            pm25 = self._base[i] * cycle * self._rng.lognormal(0.0, 0.12)
            if self._rng.random() < 0.003:
                pm25 *= self._rng.uniform(4.0, 8.0)  # construction dust or a fire nearby
            loud = 64.0 if site.category == "roadside" else 50.0
            noise = loud + 8.0 * (cycle - 1.0) + self._rng.normal(0.0, 2.0)
            out.append({"sensor_id": site.id, "ts": stamp, "lon": site.lon, "lat": site.lat,
                        "pm25": round(float(pm25), 1), "noise_db": round(float(noise), 1)})
        return out


class Cameras:
    """Cameras upload clips at random (Poisson) moments; some clips carry an AI label."""

    def __init__(self, sites: list[Site], start: float, clips_per_hour: float = 6.0,
                 seed: int = 0) -> None:
        self.sites = sites
        self.rate_s = clips_per_hour / 3600
        self._rng = np.random.default_rng(seed + 404)
        self._last = start

    def advance(self, now: float) -> list[dict[str, Any]]:
        window = max(now - self._last, 0.0)
        counts = self._rng.poisson(self.rate_s * window, len(self.sites))
        camera = np.repeat(np.arange(len(self.sites)), counts)
        # Sorted times paired with shuffled cameras: clips arrive in time order.
        ts = np.sort(self._rng.uniform(self._last, now, len(camera)))
        self._rng.shuffle(camera)
        labels = self._rng.choice(len(CLIP_LABELS), len(camera), p=CLIP_LABEL_P)
        self._last = now
        out = []
        for c, t, stamp, label in zip(camera, ts, iso_times(ts), labels, strict=True):
            site = self.sites[int(c)]
            clip_id = f"{site.id}-{int(t * 1000)}"
            day = stamp[:10].replace("-", "")
            out.append({
                "clip_id": clip_id, "camera_id": site.id, "ts": stamp,
                "lon": site.lon, "lat": site.lat,
                "uri": f"s3://cityos-media/cameras/{site.id}/{day}/{clip_id}.mp4",
                "media_type": "video/mp4",
                "duration_s": int(self._rng.integers(15, 61)),
                "label": CLIP_LABELS[int(label)],
            })
        return out
