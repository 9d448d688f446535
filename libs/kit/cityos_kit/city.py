"""The city a stack serves: its divisions, departments and units, read from the city's files.

A real city loads its own `divisions.geojson`, `units.json` and `categories.json` of the same kind.
"""

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BBox:
    west: float
    south: float
    east: float
    north: float

    def contains(self, lon: float, lat: float) -> bool:
        return self.west <= lon <= self.east and self.south <= lat <= self.north


class City:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _load(self, name: str) -> Any:
        path = self.directory / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"city file {path} is missing (set CITYOS_CITY_DIR)") from exc

    @cached_property
    def divisions(self) -> dict[str, Any]:
        """The divisions as a GeoJSON FeatureCollection."""
        data: dict[str, Any] = self._load("divisions.geojson")
        return data

    @cached_property
    def units(self) -> list[dict[str, Any]]:
        return list(self._load("units.json")["units"])

    @cached_property
    def departments(self) -> dict[str, dict[str, Any]]:
        return {d["code"]: d for d in self._load("units.json")["departments"]}

    @cached_property
    def categories(self) -> list[dict[str, Any]]:
        return list(self._load("categories.json")["categories"])

    @cached_property
    def bbox(self) -> BBox:
        """The bounding box of all divisions, with a small margin for border roads."""
        xs: list[float] = []
        ys: list[float] = []

        def walk(coords: Any) -> None:
            if coords and isinstance(coords[0], (int, float)):
                xs.append(coords[0])
                ys.append(coords[1])
            else:
                for c in coords:
                    walk(c)

        for feature in self.divisions["features"]:
            walk(feature["geometry"]["coordinates"])
        margin = 0.02
        return BBox(min(xs) - margin, min(ys) - margin, max(xs) + margin, max(ys) + margin)
