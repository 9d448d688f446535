"""Small plane geometry on lon/lat: point in a drawn polygon, and counts per grid cell.

Polygons drawn on the screen are a few dozen vertices over a city: an even-odd ray test is exact
enough and needs no geometry library.
"""

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

Ring = list[tuple[float, float]]
M_PER_DEG_LAT = 110_574.0


class BadPolygon(ValueError):
    pass


def rings_of(geometry: dict[str, Any]) -> list[list[Ring]]:
    """Polygons (outer ring, holes...) of a GeoJSON Polygon or MultiPolygon."""
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon") or not isinstance(coords, list):
        raise BadPolygon("a Polygon or MultiPolygon is needed")
    polygons: list[Any] = [coords] if kind == "Polygon" else coords
    try:
        result = [[[(float(x), float(y)) for x, y, *_ in ring] for ring in poly]
                  for poly in polygons]
    except (TypeError, ValueError) as exc:
        raise BadPolygon(f"not GeoJSON coordinates: {exc}") from exc
    if not result or any(len(poly) == 0 or len(poly[0]) < 4 for poly in result):
        raise BadPolygon("a polygon needs a closed ring of at least 3 points")
    return result


def _in_ring(ring: Ring, x: float, y: float) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / ((yj - yi) or 1e-300) + xi:
            inside = not inside
        j = i
    return inside


def contains(geometry: dict[str, Any]) -> Callable[[float | None, float | None], bool]:
    """A test `(lon, lat) -> inside?` for the polygon (holes excluded)."""
    polygons = rings_of(geometry)
    boxes = [(min(x for x, _ in p[0]), min(y for _, y in p[0]),
              max(x for x, _ in p[0]), max(y for _, y in p[0])) for p in polygons]

    def test(lon: float | None, lat: float | None) -> bool:
        if lon is None or lat is None:
            return False
        for (w, s, e, n), poly in zip(boxes, polygons, strict=True):
            if w <= lon <= e and s <= lat <= n and _in_ring(poly[0], lon, lat) and \
                    not any(_in_ring(hole, lon, lat) for hole in poly[1:]):
                return True
        return False

    return test


def grid_counts(points: Iterable[tuple[float, float]], cell_m: float) -> list[dict[str, Any]]:
    """Points counted per square cell of about `cell_m` metres; each cell's centre and count."""
    points = list(points)
    if not points:
        return []
    mid_lat = sum(lat for _, lat in points) / len(points)
    dy = cell_m / M_PER_DEG_LAT
    dx = cell_m / (M_PER_DEG_LAT * 1.0068 * math.cos(math.radians(mid_lat)))
    counts = Counter((math.floor(lon / dx), math.floor(lat / dy)) for lon, lat in points)
    return [{"lon": round((i + 0.5) * dx, 5), "lat": round((j + 0.5) * dy, 5), "count": n,
             "cell_m": cell_m} for (i, j), n in counts.most_common()]


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance (haversine, mean Earth radius): enough to rank people by it."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + \
        math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))
