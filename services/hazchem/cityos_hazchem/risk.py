"""The risk index: per area, a weighted sum of normalised factors, every term kept visible.

Areas are H3 cells of a city-chosen resolution, and the streets of the city's divisions (a cell
belongs to the street holding its centre). Factors, each an amount per area:

- `traffic`: hazardous-goods vehicle-hours in the area over the last days (fixes × interval);
- `enterprises`: hazardous-goods enterprises, each weighted by kind × status, where a closed or
  suspended one, or one whose licence has expired, weighs more (it should not be active);
- `warnings`: hazchem's own warnings placed in the area over the last days;
- `population`: residents (the population layer, a registered dataset);
- `incidents`: past cases in the area from the event hub.

A factor is normalised to [0, 1) as raw / (raw + scale), where the scale is the city's
`scale_quantile` value of the factor over the areas where it is present (the median by default):
an area at the scale scores 0.5, at 3× the scale 0.75, at 9× 0.9. Saturating rather than divided
by the maximum, so one extreme area does not flatten every other, and never capped, so areas
above the scale still rank among themselves. The score is
100 × Σ weight × normalised / Σ weight, so each factor's contribution is
100 × weight × normalised / Σ weight and the contributions add up to the score.

Cells have nearly equal areas, so a cell's raw value is an amount; a street's is a density (per
km²), so large and small streets compare. Everything here is pure: no network, no database.

Tuning (`RiskSettings`, `CITYOS_HAZCHEM_RISK_*`): a city sets the weights to its priorities
(say people first: raise `WEIGHT_POPULATION`), the kind and status weights of its enterprise
register, the windows and the incident categories; then recomputes a past day it knows
(`POST /risk/compute {"day": ...}`) and reads `GET /risk?day=...`: each area's factor list shows
which term put it where, so a surprising rank points at the weight or the data to fix.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo

import h3
import numpy as np
import numpy.typing as npt

from cityos_kit.config import from_env

Floats = npt.NDArray[np.float64]
Strs = npt.NDArray[np.str_]

FACTORS = ("traffic", "enterprises", "warnings", "population", "incidents")
CELL_UNITS = {"traffic": "vehicle-hours", "enterprises": "weighted enterprises",
              "warnings": "warnings", "population": "residents", "incidents": "cases"}


def _pairs(text: str) -> dict[str, float]:
    """`"producer=1.5, storage=1.5"` -> {"producer": 1.5, "storage": 1.5}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"`{part.strip()}` is not name=number")
            out[key.strip()] = float(value)
    return out


@dataclass(frozen=True)
class _Datasets:
    gps_datasets: str = ""
    enterprise_datasets: str = ""


@dataclass(frozen=True)
class RiskSettings:
    """A city's risk model (`CITYOS_HAZCHEM_RISK_*`): weights, windows, datasets, schedule."""

    # H3 resolution of the cells: 7 ≈ 5.2 km², 8 ≈ 0.74 km², 9 ≈ 0.11 km² (5-10).
    h3_resolution: int = 8
    # Weight of each factor (any non-negative numbers; only their ratios matter).
    weight_traffic: float = 25.0
    weight_enterprises: float = 20.0
    weight_warnings: float = 20.0
    weight_population: float = 20.0
    weight_incidents: float = 15.0
    # Normalisation: the quantile of a factor (over areas where it is present) that maps to 0.5.
    scale_quantile: float = 0.5
    # Windows, in days up to the end of the day computed.
    traffic_days: int = 7
    # Traffic is counted this many hours per cell query: the engine probes its index once per
    # cell run and 10-minute bin under a 5-s statement limit, so a city-wide week in one query
    # would hit it (benchmarks/hazchem_risk.py); shorter spans stay far below it.
    traffic_query_hours: int = 6
    warning_days: int = 30
    incident_days: int = 365
    # Registered datasets read through the spatio-temporal service (comma-separated lists);
    # empty: the ones the live warnings read (CITYOS_HAZCHEM_GPS_DATASETS, _ENTERPRISE_DATASETS).
    gps_datasets: str = ""
    enterprise_datasets: str = ""
    population_dataset: str = "population"
    population_attr: str = "population"  # the attribute holding a point's residents
    # Seconds one fix stands for (the terminals' reporting interval): fixes -> vehicle-hours.
    fix_interval_s: float = 30.0
    # Past incidents: cases of these categories (燃气泄漏, 危化品异常). Cases raised only by
    # hazchem's own warnings (channel `system`) are left out: the `warnings` factor has them.
    incident_categories: str = "0801,0803"
    # Enterprise weight = kind weight × the heaviest of its status weight and (if its licence
    # has expired by the day computed) the expired-licence weight. Unknown kinds weigh 1.
    kind_weights: str = "producer=1.5,storage=1.5,disposer=1.2,user=1.0"
    status_weights: str = "operating=1,suspended=2,closed=2.5"
    expired_licence_weight: float = 3.0
    # The daily run: at this local time, yesterday's index is computed (once per day).
    daily_at: str = "01:00"
    timezone: str = "Asia/Shanghai"
    daily: bool = True
    tick_s: float = 300.0  # how often the timer looks (and retries a day that failed)
    # A service down for days computes the days missed since its last run, at most this many.
    catch_up_days: int = 7
    # The event hub's base URL (the Kubernetes Service `events` by default).
    events_url: str = "http://events"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "RiskSettings":
        s = from_env(cls, prefix="CITYOS_HAZCHEM_RISK_", env=env, **overrides)
        shared = from_env(_Datasets, prefix="CITYOS_HAZCHEM_", env=env)
        return replace(s, gps_datasets=s.gps_datasets or shared.gps_datasets,
                       enterprise_datasets=s.enterprise_datasets or shared.enterprise_datasets)

    def weights(self) -> dict[str, float]:
        return {f: float(getattr(self, f"weight_{f}")) for f in FACTORS}

    def check(self) -> None:
        """A city's configuration error says what is wrong at start-up, not in a nightly run."""
        if not 1 <= self.traffic_query_hours <= 7 * 24:
            raise ValueError("CITYOS_HAZCHEM_RISK_TRAFFIC_QUERY_HOURS must be 1-168")
        if not 5 <= self.h3_resolution <= 10:
            raise ValueError("CITYOS_HAZCHEM_RISK_H3_RESOLUTION must be 5-10")
        if any(w < 0 for w in self.weights().values()) or sum(self.weights().values()) <= 0:
            raise ValueError("risk weights must be >= 0 and not all 0")
        if not 0 < self.scale_quantile <= 1:
            raise ValueError("CITYOS_HAZCHEM_RISK_SCALE_QUANTILE must be in (0, 1]")
        for text in (self.kind_weights, self.status_weights):
            _pairs(text)
        time.fromisoformat(self.daily_at)
        ZoneInfo(self.timezone)
        if not 1 <= self.catch_up_days <= 60:
            raise ValueError("CITYOS_HAZCHEM_RISK_CATCH_UP_DAYS must be 1-60")

    @staticmethod
    def listed(text: str) -> list[str]:
        return [s.strip() for s in text.split(",") if s.strip()]


@dataclass(frozen=True)
class Breakdown:
    """Every area's factors: raw, normalised, contribution (areas × FACTORS), and its score."""

    areas: list[str]
    raw: Floats
    normalised: Floats
    contribution: Floats
    score: Floats
    weights: Floats  # per factor
    scales: Floats  # per factor: the raw value that normalises to 0.5 (0: absent everywhere)

    def order(self) -> npt.NDArray[np.intp]:
        """Area indices, highest score first (ties by area id, so runs agree)."""
        return np.lexsort((np.array(self.areas, dtype=str), -self.score))

    def factors(self, i: int) -> list[dict[str, float | str]]:
        return [{"name": f, "raw": float(self.raw[i, k]), "normalised": float(self.normalised[i, k]),
                 "weight": float(self.weights[k]), "contribution": float(self.contribution[i, k])}
                for k, f in enumerate(FACTORS)]


def normalise(raw: Floats, scale_quantile: float) -> tuple[Floats, float]:
    """Raw values -> raw / (raw + scale), the scale being the quantile of the non-zero values;
    returns (normalised, scale)."""
    present = raw[raw > 0]
    if present.size == 0:
        return np.zeros_like(raw), 0.0
    scale = float(np.quantile(present, scale_quantile))
    return raw / (raw + scale), scale


def score(areas: list[str], raw: Mapping[str, Floats], weights: Mapping[str, float],
          scale_quantile: float = 0.5) -> Breakdown:
    """The index of `areas` from each factor's raw values (one per area, in FACTORS order)."""
    r = np.column_stack([np.asarray(raw[f], dtype=np.float64) for f in FACTORS]) \
        if areas else np.zeros((0, len(FACTORS)))
    cols = [normalise(r[:, k], scale_quantile) for k in range(len(FACTORS))]
    n = np.column_stack([c[0] for c in cols]) if areas else np.zeros_like(r)
    w = np.array([float(weights[f]) for f in FACTORS])
    contribution = 100.0 * n * w / w.sum()
    return Breakdown(list(areas), r, n, contribution, contribution.sum(axis=1), w,
                     np.array([c[1] for c in cols]))


# -- from inputs to raw values per area ------------------------------------------------------


def cells_of(lon: Floats, lat: Floats, resolution: int) -> Strs:
    return np.array([h3.latlng_to_cell(float(y), float(x), resolution)
                     for x, y in zip(lon, lat, strict=True)], dtype=str)


def per_area(areas: list[str], keys: Strs, values: Floats) -> Floats:
    """Σ values per area (keys not among `areas` are ignored)."""
    index = {a: i for i, a in enumerate(areas)}
    out = np.zeros(len(areas))
    at = np.array([index.get(str(k), -1) for k in keys], dtype=np.intp)
    keep = at >= 0
    np.add.at(out, at[keep], np.asarray(values, dtype=np.float64)[keep])
    return out


def enterprise_weights(kind: Sequence[str] | Strs, status: Sequence[str] | Strs,
                       licence_until: Sequence[date | None], day: date, s: RiskSettings) -> Floats:
    """kind weight × max(status weight, expired-licence weight if the licence ran out by `day`)."""
    kinds, statuses = _pairs(s.kind_weights), _pairs(s.status_weights)
    k = np.array([kinds.get(str(x), 1.0) for x in kind])
    st = np.array([statuses.get(str(x), 1.0) for x in status])
    expired = np.array([u is not None and u < day for u in licence_until], dtype=bool)
    return np.asarray(k * np.where(expired, np.maximum(st, s.expired_licence_weight), st))


@dataclass(frozen=True)
class Points:
    """Located inputs of one factor: where, and how much each counts."""

    lon: Floats
    lat: Floats
    amount: Floats

    @staticmethod
    def of(rows: Iterable[tuple[float, float, float]]) -> "Points":
        a = np.array(list(rows), dtype=np.float64).reshape(-1, 3)
        return Points(a[:, 0], a[:, 1], a[:, 2])


def cell_raw(traffic: Mapping[str, float], points: Mapping[str, Points], resolution: int
             ) -> tuple[list[str], dict[str, Floats]]:
    """Raw values per cell: `traffic` is already per cell (vehicle-hours); the other factors
    are located points summed into the cells holding them. Areas: every cell with something."""
    keyed = {f: cells_of(p.lon, p.lat, resolution) for f, p in points.items()}
    areas = sorted(set(traffic) | {str(c) for cells in keyed.values() for c in cells})
    raw = {f: per_area(areas, keyed[f], points[f].amount) for f in points}
    raw["traffic"] = np.array([float(traffic.get(a, 0.0)) for a in areas])
    return areas, {f: raw.get(f, np.zeros(len(areas))) for f in FACTORS}


def street_cells(divisions: Mapping[str, Any], resolution: int) -> dict[str, str]:
    """cell -> street code, for the cells whose centre lies in a street of the divisions."""
    out: dict[str, str] = {}
    for feature in divisions["features"]:
        p = feature["properties"]
        if p.get("level") != "street":
            continue
        for cell in h3.geo_to_cells(feature["geometry"], resolution):
            out[cell] = str(p["code"])
    return out


def street_raw(cells: list[str], raw: Mapping[str, Floats], cell_street: Mapping[str, str],
               streets: list[str]) -> dict[str, Floats]:
    """Per street, each factor's density per km² over the street's cells (cells outside every
    street count for none). The street's area is that of all its cells, with or without data."""
    key = np.array([cell_street.get(c, "") for c in cells], dtype=str)
    area_km2 = np.zeros(len(streets))
    index = {s: i for i, s in enumerate(streets)}
    for cell, street in cell_street.items():
        if street in index:
            area_km2[index[street]] += h3.cell_area(cell, "km^2")
    area_km2[area_km2 == 0] = np.inf
    return {f: per_area(streets, key, raw[f]) / area_km2 for f in FACTORS}
