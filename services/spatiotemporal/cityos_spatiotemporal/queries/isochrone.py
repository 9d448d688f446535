"""Query 7, reachable area: where a vehicle can be within N minutes on the road network, and the
intersections on the edge of that area (where to intercept it).

Why pgRouting: the graph lives next to the roads it is built from, every replica sees the same
topology without a cache to keep coherent, and pgr_drivingDistance reads only the roads inside
the box the fastest road could reach in N minutes (an index scan), so a 5-minute area of a
whole city costs milliseconds. The start is the point on the nearest road, not its nearest
node: the two ends of that road are the roots, each with the time it takes to drive there.
Roads whose far end is out of time are cut where the time runs out; the area is those road
pieces widened by AREA_BUFFER_M.
"""

from typing import Any

import asyncpg
import numpy as np
import shapely
from shapely.geometry import LineString, MultiLineString, mapping
from shapely.ops import substring

from cityos_contracts.stquery import ReachableArea, ReachableFeature, ReachableProps, ReachableQuery
from cityos_spatiotemporal.queries import limits, network
from cityos_spatiotemporal.queries.errors import BadQuery
from cityos_spatiotemporal.queries.geo import M_PER_DEG_LAT, m_per_deg_lon, planar, unplanar

AREA_BUFFER_M = 60.0

_SNAP = """
    SELECT e.id, e.source, e.target, e.cost, e.reverse_cost, ST_AsBinary(e.geom) AS wkb,
           ST_LineLocatePoint(e.geom, p.g) AS f,
           ST_Distance(e.geom::geography, p.g::geography) AS distance_m, n.component
    FROM (SELECT ST_SetSRID(ST_MakePoint($2, $3), 4326) AS g) p
    CROSS JOIN LATERAL (SELECT * FROM road_edges WHERE network = $1
                        ORDER BY geom <-> p.g LIMIT 8) e
    JOIN road_nodes n ON n.network = $1 AND n.id = e.source
    ORDER BY distance_m LIMIT 1
"""

_DRIVE = """
    SELECT from_v, node, agg_cost FROM pgr_drivingDistance(
        format('SELECT id, source, target, cost, reverse_cost FROM road_edges'
               ' WHERE network = %L AND geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)',
               $1::text, $2::float8, $3::float8, $4::float8, $5::float8),
        $6::bigint[], $7::float8, directed => true)
"""

_EDGES = """
    SELECT e.id, e.source, e.target, e.cost, e.reverse_cost, ST_AsBinary(e.geom) AS wkb
    FROM road_edges e WHERE e.network = $1 AND (e.source = ANY($2) OR e.target = ANY($2))
"""


def _pieces(line: LineString, spans: list[tuple[float, float]]) -> list[LineString]:
    out = []
    for a, b in spans:
        if b - a > 1e-9:
            piece = line if (a, b) == (0.0, 1.0) else substring(line, a, b, normalized=True)
            if isinstance(piece, LineString) and not piece.is_empty:
                out.append(piece)
    return out


async def reachable(pool: asyncpg.Pool, q: ReachableQuery) -> ReachableArea:
    net = await network.ensure(pool, q.network)
    budget = q.minutes * 60.0
    async with limits.bounded(pool) as conn:
        snap = await conn.fetchrow(_SNAP, q.network, q.lon, q.lat)
        if snap is None or snap["distance_m"] > q.max_snap_m:
            raise BadQuery(detail=f"the start is {snap['distance_m'] if snap else float('inf'):,.0f}"
                                  f" m from the nearest road of `{q.network}`, more than "
                                  f"max_snap_m={q.max_snap_m:g}")
        if snap["component"] != net.main_component and not q.allow_disconnected:
            raise BadQuery(detail=(
                f"the nearest road to the start (road {snap['id']}) is on a part of network "
                f"`{q.network}` that is not connected to its main part ({net.main_nodes} of "
                f"{net.nodes} nodes, {net.components} separate parts): check the road data, "
                "or pass allow_disconnected=true to compute the area on that part alone"))
        f, cost, rcost = snap["f"], snap["cost"], snap["reverse_cost"]
        start: dict[int, float] = {snap["target"]: (1 - f) * cost}  # driving with the road
        if rcost >= 0:  # and against it, unless one-way
            start[snap["source"]] = min(start.get(snap["source"], np.inf), f * rcost)
        roots = {n: t for n, t in start.items() if t <= budget}
        reached: dict[int, float] = {}
        if roots:
            reach = net.max_speed_kmh / 3.6 * budget  # metres the fastest road allows
            dx, dy = reach / m_per_deg_lon(q.lat), reach / M_PER_DEG_LAT
            rows = await conn.fetch(_DRIVE, q.network, q.lon - dx, q.lat - dy, q.lon + dx,
                                    q.lat + dy, list(roots), budget - min(roots.values()))
            for r in rows:
                t = roots[r["from_v"]] + r["agg_cost"]
                if t <= budget and t < reached.get(r["node"], np.inf):
                    reached[r["node"]] = t
        edges = await conn.fetch(_EDGES, q.network, list(reached)) if reached else []
        nodes = await conn.fetch(
            "SELECT id, degree, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM road_nodes"
            " WHERE network = $1 AND id = ANY($2)", q.network, list(reached)) if reached else []
    return _answer(q, snap, budget, reached, edges, nodes)


def _answer(q: ReachableQuery, snap: asyncpg.Record, budget: float, reached: dict[int, float],
            edges: list[asyncpg.Record], nodes: list[asyncpg.Record]) -> ReachableArea:
    pieces: list[LineString] = []
    frontier: set[int] = set()
    for e in edges:
        line = shapely.from_wkb(e["wkb"])
        u, v, c, rc = e["source"], e["target"], e["cost"], e["reverse_cost"]
        from_u = min(1.0, (budget - reached[u]) / c) if u in reached and c > 0 else \
            (1.0 if u in reached else 0.0)
        from_v = min(1.0, (budget - reached[v]) / rc) if v in reached and rc > 0 else \
            (1.0 if v in reached and rc == 0 else 0.0)
        if from_u + from_v >= 1.0:
            pieces.append(line)
            continue
        pieces += _pieces(line, [(0.0, from_u), (1.0 - from_v, 1.0)])
        # A reached end whose road runs out of time before the next node: the area ends here.
        if u in reached and c > 0:
            frontier.add(u)
        if v in reached and rc > 0:
            frontier.add(v)
    # The road the start is on, from the start point both ways (one way if one-way).
    line, f = shapely.from_wkb(snap["wkb"]), snap["f"]
    ahead = min(1.0, f + budget / snap["cost"]) if snap["cost"] > 0 else 1.0
    behind = max(0.0, f - budget / snap["reverse_cost"]) if snap["reverse_cost"] > 0 else f
    pieces += _pieces(line, [(f, ahead), (behind, f)])
    start_pt = line.interpolate(f, normalized=True)
    lat0 = start_pt.y
    if pieces:
        area = unplanar(planar(MultiLineString(pieces), lat0, start_pt.x).buffer(
            AREA_BUFFER_M, quad_segs=2), lat0, start_pt.x)
    else:
        area = unplanar(planar(start_pt, lat0, start_pt.x).buffer(AREA_BUFFER_M, quad_segs=2),
                        lat0, start_pt.x)
    features = [
        ReachableFeature(geometry=_geojson(area), properties=ReachableProps(
            kind="area", seconds=budget, roads_reached=len(pieces))),
        ReachableFeature(geometry=_geojson(start_pt), properties=ReachableProps(
            kind="start", seconds=0.0)),
    ]
    for n in sorted(nodes, key=lambda r: reached[r["id"]]):
        if n["id"] in frontier:
            features.append(ReachableFeature(
                geometry={"type": "Point", "coordinates": [n["lon"], n["lat"]]},
                properties=ReachableProps(kind="boundary", seconds=round(reached[n["id"]], 1),
                                          node=n["id"], degree=n["degree"])))
    return ReachableArea(features=features, snap_distance_m=round(snap["distance_m"], 1))


def _geojson(geom: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(mapping(shapely.set_precision(geom, 1e-7)))
    return out
