"""Query areas (boxes and polygons) checked before they reach the database, and the metric
helpers the queries share.

Distances at city scale use a local equirectangular projection around the area of interest:
within 50 km of its origin it is off by well under 1 % — far below GPS error.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.validation import explain_validity

from cityos_spatiotemporal.queries.errors import BadQuery

EARTH_RADIUS_M = 6_371_000.0  # the mean radius, as trackintel's haversine uses
M_PER_DEG_LAT = 110_574.0


def m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * math.cos(math.radians(lat))


@dataclass(frozen=True)
class Area:
    """A validated query area: the shape, its bounds, and whether it is just its bounds."""

    shape: Polygon | MultiPolygon
    west: float
    south: float
    east: float
    north: float
    is_box: bool

    @property
    def wkb(self) -> bytes:
        return bytes(shapely.to_wkb(self.shape))

    def area_km2(self) -> float:
        return float(planar(self.shape, (self.south + self.north) / 2).area) / 1e6


def _check_lon_lat(coords: npt.NDArray[np.float64]) -> None:
    lon, lat = coords[:, 0], coords[:, 1]
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise BadQuery(detail="coordinates must be finite numbers")
    if (np.abs(lat) > 90).any():
        raise BadQuery(detail="a latitude is outside [-90, 90]: coordinates are [lon, lat]")
    if (np.abs(lon) > 180).any():
        raise BadQuery(detail="a longitude is outside [-180, 180]: an area that crosses the "
                              "antimeridian must be split into two at ±180°")
    if lon.max() - lon.min() > 180:
        raise BadQuery(detail="the area spans more than 180° of longitude, so it crosses the "
                              "antimeridian (or goes the long way round): split it at ±180°")


def parse_area(bbox: list[float] | None, polygon: dict[str, Any] | None,
               max_km2: float) -> Area:
    """The area of a query: exactly one of `bbox` [w, s, e, n] or a GeoJSON (Multi)Polygon."""
    if (bbox is None) == (polygon is None):
        raise BadQuery(detail="give exactly one of `bbox` or `polygon`")
    if bbox is not None:
        west, south, east, north = bbox
        if west > east:
            raise BadQuery(detail="bbox west is east of its east: a box across the antimeridian "
                                  "must be split in two at ±180°")
        if south >= north or west == east:
            raise BadQuery(detail="bbox is empty or reversed: use [west, south, east, north]")
        _check_lon_lat(np.array([[west, south], [east, north]], dtype=np.float64))
        area = Area(box(west, south, east, north), west, south, east, north, True)
    else:
        assert polygon is not None
        if polygon.get("type") not in ("Polygon", "MultiPolygon"):
            raise BadQuery(detail="polygon must be a GeoJSON Polygon or MultiPolygon, "
                                  f"not {polygon.get('type')!r}")
        try:
            geom = shape(polygon)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise BadQuery(detail=f"polygon is not valid GeoJSON: {exc}") from exc
        if geom.is_empty:
            raise BadQuery(detail="polygon is empty")
        _check_lon_lat(np.asarray(shapely.get_coordinates(geom), dtype=np.float64))
        if not geom.is_valid:
            raise BadQuery(detail=f"polygon is not valid ({explain_validity(geom)}): a ring must "
                                  "not cross itself or another ring")
        if not isinstance(geom, (Polygon, MultiPolygon)):
            raise BadQuery(detail="polygon must be a Polygon or MultiPolygon")
        west, south, east, north = geom.bounds
        area = Area(geom, west, south, east, north, False)
    km2 = area.area_km2()
    if km2 > max_km2:
        raise BadQuery(detail=f"the area is {km2:,.0f} km², more than the limit of "
                              f"{max_km2:,.0f} km²; draw a smaller one")
    return area


def planar(geom: Any, lat0: float, lon0: float = 0.0) -> Any:
    """The geometry in metres east/north of (lon0, lat0) (equirectangular)."""
    kx, ky = m_per_deg_lon(lat0), M_PER_DEG_LAT
    return shapely.transform(geom, lambda c: np.column_stack(((c[:, 0] - lon0) * kx,
                                                              (c[:, 1] - lat0) * ky)))


def unplanar(geom: Any, lat0: float, lon0: float = 0.0) -> Any:
    kx, ky = m_per_deg_lon(lat0), M_PER_DEG_LAT
    return shapely.transform(geom, lambda c: np.column_stack((c[:, 0] / kx + lon0,
                                                              c[:, 1] / ky + lat0)))


def great_circle_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> Any:
    """Haversine distance in metres (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}
