"""Hazardous-chemical supervision's public payloads: the risk index per area.

The index is a GeoJSON FeatureCollection (WGS84 lon/lat) of areas, H3 cells or streets, each with
its score and every factor's raw value, normalised value, weight and contribution (the
contributions add up to the score), so a reader sees why an area ranks where it does.
"""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

RiskLevel = Literal["cell", "street"]
RiskFactorName = Literal["traffic", "enterprises", "warnings", "population", "incidents"]


class RiskComputeRequest(Struct, frozen=True, forbid_unknown_fields=True):
    """Recompute the index of one day (local date of the city; default yesterday), replacing
    what was stored for that day."""

    day: date | None = None


class RiskFactor(Struct, frozen=True):
    name: RiskFactorName
    raw: float  # cells: an amount in the cell; streets: per km² (see `RiskMap.units`)
    normalised: Annotated[float, Meta(ge=0, le=1)]  # raw / (raw + the factor's scale)
    weight: float
    contribution: float  # 100 × weight × normalised / Σ weights


class RiskProps(Struct, frozen=True):
    area: str  # H3 cell id or street code
    level: RiskLevel
    rank: int  # 1 = highest risk of the day at this level
    score: Annotated[float, Meta(ge=0, le=100)]  # Σ contributions
    factors: list[RiskFactor]
    name: str | None = None  # street name
    street: str | None = None  # a cell's street (None outside every street)


class RiskFeature(Struct, frozen=True):
    geometry: dict[str, Any]
    properties: RiskProps
    type: Literal["Feature"] = "Feature"


class RiskMap(Struct, frozen=True, tag_field="schema", tag="cityos.hazchem.risk_map.v1"):
    """The index of one day at one level, highest risk first."""

    day: date
    level: RiskLevel
    computed_at: datetime
    h3_resolution: int
    weights: dict[str, float]
    scales: dict[str, float]  # per factor: the raw value that normalises to 0.5 (0: absent)
    units: dict[str, str]  # per factor: what `raw` counts
    windows_days: dict[str, int]  # per factor with a time window: how many days it covers
    features: list[RiskFeature]
    type: Literal["FeatureCollection"] = "FeatureCollection"


class RiskRun(Struct, frozen=True, tag_field="schema", tag="cityos.hazchem.risk_run.v1"):
    """One computation of a day's index: what it read and its highest-risk areas."""

    day: date
    computed_at: datetime
    trigger: Literal["request", "daily"]
    cells: int
    streets: int
    read: dict[str, int]  # fixes, enterprises, population points, warnings, incidents
    top: list[RiskProps]  # the five highest-risk cells
