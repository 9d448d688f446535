"""Where a report is: its division (district, street) by point-in-polygon on the city's
divisions, its grid cell, and a point from the address text when it came without coordinates.

The grid is the unit grid of grid management (网格化管理): cells of 0.001° × 0.0009° (about
100 m × 100 m, the "ten-thousand-square-metre" cell) counted from the city's south-west
corner, named `<street code>-<column>-<row>` so a grid worker's cells read as theirs.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely import STRtree
from shapely.geometry import Point, shape

from cityos_contracts.cases import Location

GRID_DLON = 0.001
GRID_DLAT = 0.0009
# Coarse cells for the duplicate search: 0.01° (about 1 km); a report's candidates lie in the
# few cells its search radius touches.
COARSE = 0.01


class OutsideCity(ValueError):
    """The point lies in none of the city's divisions."""


@dataclass(frozen=True)
class Place:
    name: str
    lon: float
    lat: float
    precision_m: float
    kind: str = "place"


def coarse_cell(lon: float, lat: float) -> int:
    return math.floor((lon + 180) / COARSE) * 100_000 + math.floor((lat + 90) / COARSE)


def neighbour_cells(lon: float, lat: float, radius_m: float) -> list[int]:
    """The coarse cells within `radius_m` of the point (its own and the ones around)."""
    dlon = radius_m / (111_320 * math.cos(math.radians(lat)))
    dlat = radius_m / 110_540
    xs = range(math.floor((lon - dlon + 180) / COARSE), math.floor((lon + dlon + 180) / COARSE) + 1)
    ys = range(math.floor((lat - dlat + 90) / COARSE), math.floor((lat + dlat + 90) / COARSE) + 1)
    return sorted(x * 100_000 + y for x in xs for y in ys)


class Locator:
    """Divisions, grid and gazetteer of one city."""

    def __init__(self, divisions: dict[str, Any], places: list[Place]) -> None:
        features = divisions["features"]
        names = {f["properties"]["code"]: f["properties"]["name"] for f in features}
        streets = sorted((f for f in features if f["properties"]["level"] == "street"),
                         key=lambda f: f["properties"]["code"])
        self._streets = [(f["properties"]["code"], f["properties"]["name"],
                          f["properties"]["parent"], names.get(f["properties"]["parent"]))
                         for f in streets]
        self._shapes = [shape(f["geometry"]) for f in streets]
        self._tree = STRtree(self._shapes)
        west = min(s.bounds[0] for s in self._shapes)
        south = min(s.bounds[1] for s in self._shapes)
        self._origin = (west, south)
        # Division names are places too (a caller may only say the street), found last.
        coarse = [Place(name, s.centroid.x, s.centroid.y, _radius_m(s), "division")
                  for (_, name, _, _), s in zip(self._streets, self._shapes, strict=True)]
        # Longest name first: "文峰苑" must win over a shorter name it contains.
        self._places = sorted([*places, *coarse], key=lambda p: -len(p.name))

    @classmethod
    def load(cls, divisions: dict[str, Any], gazetteer: Path) -> "Locator":
        data = json.loads(gazetteer.read_text(encoding="utf-8"))
        places = [Place(p["name"], float(p["lon"]), float(p["lat"]),
                        float(p.get("precision_m", 200)), p.get("kind", "place"))
                  for p in data["places"]]
        return cls(divisions, places)

    def division(self, lon: float, lat: float) -> tuple[str, str, str, str | None] | None:
        """(street code, street name, district code, district name), or None outside."""
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return self._streets[int(min(hits))]  # on a border: the lower code, deterministically

    def grid(self, street: str, lon: float, lat: float) -> str:
        # The epsilon keeps a point on a cell edge in the cell it names (121.05 → 350, not 349).
        col = math.floor((lon - self._origin[0]) / GRID_DLON + 1e-9)
        row = math.floor((lat - self._origin[1]) / GRID_DLAT + 1e-9)
        return f"{street}-{col:03d}-{row:03d}"

    def geocode(self, text: str) -> Place | None:
        """The most specific gazetteer place named in the text (the longest name)."""
        for place in self._places:
            if place.name in text:
                return place
        return None

    def resolve(self, lon: float | None, lat: float | None, address: str | None,
                text: str = "") -> Location:
        """A report's location: its point if it has one (OutsideCity if that is not in the
        city), else the gazetteer's point for its address (or, failing that, its text)."""
        source, precision = "point", None
        if lon is None or lat is None:
            place = self.geocode(address or "") or self.geocode(text)
            if place is None:
                return Location(address=address, source="none")
            lon, lat, source, precision = place.lon, place.lat, "gazetteer", place.precision_m
        found = self.division(lon, lat)
        if found is None:
            raise OutsideCity(f"({lon}, {lat}) is outside the city's divisions")
        street, street_name, district, district_name = found
        return Location(lon=lon, lat=lat, address=address, district=district,
                        district_name=district_name, street=street, street_name=street_name,
                        grid=self.grid(street, lon, lat), source=source,  # type: ignore[arg-type]
                        precision_m=precision)


def _radius_m(polygon: Any) -> float:
    """Half the diagonal of a polygon's bounds, in metres: how far a name-only hit may be off."""
    w, s, e, n = polygon.bounds
    dx = (e - w) * 111_320 * math.cos(math.radians((s + n) / 2))
    dy = (n - s) * 110_540
    return round(math.hypot(dx, dy) / 2)
