"""Road network topology for reachable areas, built from an entity dataset of LineStrings.

Nodes are road ends snapped to a 5e-6° grid (about half a metre): roads whose ends meet there
share a node; roads that cross without a shared end (a bridge over a road) do not. Each road
gets a travel time at its `speed_kmh` attribute (else a speed for its class, else 30 km/h) and
is one-way when its `oneway` attribute is true. Components are counted so a start on a piece
cut off from the main network is refused with the reason.

The topology is rebuilt when the dataset's states change: states are only ever added, so their
count and latest valid_from tell a stale build apart, checked on each use (no message to miss).
"""

from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
import numpy as np
import shapely
from shapely.geometry import LineString

from cityos_spatiotemporal.queries import limits
from cityos_spatiotemporal.queries.errors import BadQuery, NotFound
from cityos_spatiotemporal.queries.geo import great_circle_m

SNAP_DEG = 5e-6
CLASS_SPEEDS = {"expressway": 100.0, "motorway": 100.0, "trunk": 80.0, "arterial": 60.0,
                "primary": 60.0, "secondary": 50.0, "local": 30.0, "residential": 30.0}
DEFAULT_SPEED = 30.0


@dataclass(frozen=True)
class Network:
    name: str
    nodes: int
    edges: int
    components: int
    main_component: int
    main_nodes: int
    max_speed_kmh: float

    def stats(self) -> dict[str, Any]:
        return {"network": self.name, "nodes": self.nodes, "edges": self.edges,
                "components": self.components, "main_component_nodes": self.main_nodes,
                "max_speed_kmh": self.max_speed_kmh}


def _network(row: asyncpg.Record) -> Network:
    return Network(row["network"], row["nodes"], row["edges"], row["components"],
                   row["main_component"], row["main_nodes"], row["max_speed_kmh"])


async def ensure(pool: asyncpg.Pool, name: str) -> Network:
    """The network's topology, rebuilt first if its roads changed since the last build."""
    async with limits.bounded(pool) as conn:
        source = await conn.fetchrow(
            "SELECT count(*) AS n, max(valid_from) AS latest FROM entity_states"
            " WHERE dataset = $1", name)
        built = await conn.fetchrow("SELECT * FROM road_networks WHERE network = $1", name)
    if source["n"] == 0:
        raise NotFound(detail=f"no road network `{name}`: no entities of that dataset are stored")
    if built and (built["source_states"], built["source_latest"]) == (source["n"],
                                                                       source["latest"]):
        return _network(built)
    async with limits.bounded(pool, limits.HEAVY_TIMEOUT_MS, readonly=False) as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('road_network:' || $1))", name)
        source = await conn.fetchrow(
            "SELECT count(*) AS n, max(valid_from) AS latest FROM entity_states"
            " WHERE dataset = $1", name)
        built = await conn.fetchrow("SELECT * FROM road_networks WHERE network = $1", name)
        if built and (built["source_states"], built["source_latest"]) == (source["n"],
                                                                           source["latest"]):
            return _network(built)  # another request built it meanwhile
        return await _build(conn, name, source["n"], source["latest"])


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"true", "yes", "1", "y"}


def _speed(attrs: dict[str, Any], category: str | None) -> float:
    try:
        speed = float(attrs.get("speed_kmh"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        speed = 0.0
    return speed if speed > 0 else CLASS_SPEEDS.get((category or "").lower(), DEFAULT_SPEED)


def _components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected component label of each node (roads taken as undirected), by union-find."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(a) for a in range(n)], dtype=np.int64)


async def _build(conn: asyncpg.Connection, name: str, states: int, latest: Any) -> Network:
    rows = await conn.fetch(
        "SELECT entity_id, category, attrs, ST_AsBinary(geom) AS wkb FROM entity_states"
        " WHERE dataset = $1 AND valid_to IS NULL AND geom IS NOT NULL"
        " AND GeometryType(geom) IN ('LINESTRING', 'MULTILINESTRING') ORDER BY entity_id", name)
    lines: list[tuple[str, np.ndarray, float, bool]] = []
    for r in rows:
        attrs = r["attrs"] if isinstance(r["attrs"], dict) else msgspec.json.decode(
            r["attrs"] or "{}")
        geom = shapely.from_wkb(r["wkb"])
        for part in getattr(geom, "geoms", [geom]):
            coords = np.asarray(part.coords)[:, :2]
            if len(coords) >= 2:
                lines.append((r["entity_id"], coords, _speed(attrs, r["category"]),
                              _truthy(attrs.get("oneway"))))
    if not lines:
        raise BadQuery(detail=f"dataset `{name}` has no LineString roads to route on")
    ends = np.array([[c[0], c[-1]] for _, c, _, _ in lines])  # (E, 2, 2)
    keys = np.rint(ends.reshape(-1, 2) / SNAP_DEG).astype(np.int64)
    uniq, first, node_of = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    node_of = node_of.reshape(-1, 2)
    src, dst = node_of[:, 0], node_of[:, 1]
    node_xy = ends.reshape(-1, 2)[first]
    degree = np.bincount(np.concatenate((src, dst)), minlength=len(uniq))
    component = _components(len(uniq), src, dst)
    labels, sizes = np.unique(component, return_counts=True)
    main = int(labels[np.argmax(sizes)])
    length = np.array([float(great_circle_m(c[:-1, 0], c[:-1, 1], c[1:, 0], c[1:, 1]).sum())
                       for _, c, _, _ in lines])
    speed = np.array([s for _, _, s, _ in lines])
    cost = length / (speed / 3.6)
    reverse = np.where([o for _, _, _, o in lines], -1.0, cost)
    await conn.execute("DELETE FROM road_edges WHERE network = $1", name)
    await conn.execute("DELETE FROM road_nodes WHERE network = $1", name)
    await conn.execute(
        "INSERT INTO road_nodes (network, id, geom, degree, component)"
        " SELECT $1, i, ST_SetSRID(ST_MakePoint(x, y), 4326), d, c FROM unnest($2::bigint[],"
        " $3::float8[], $4::float8[], $5::int[], $6::bigint[]) AS u(i, x, y, d, c)",
        name, list(range(1, len(uniq) + 1)), node_xy[:, 0].tolist(), node_xy[:, 1].tolist(),
        degree.tolist(), (component + 1).tolist())
    await conn.execute(
        "INSERT INTO road_edges (network, id, source, target, cost, reverse_cost, length_m,"
        " speed_kmh, entity_id, geom) SELECT $1, i, s, t, c, rc, l, v, e,"
        " ST_GeomFromWKB(g, 4326) FROM unnest($2::bigint[], $3::bigint[], $4::bigint[],"
        " $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::text[], $10::bytea[])"
        " AS u(i, s, t, c, rc, l, v, e, g)",
        name, list(range(1, len(lines) + 1)), (src + 1).tolist(), (dst + 1).tolist(),
        cost.tolist(), reverse.tolist(), length.tolist(), speed.tolist(),
        [e for e, _, _, _ in lines],
        [bytes(shapely.to_wkb(LineString(c))) for _, c, _, _ in lines])
    row = await conn.fetchrow(
        "INSERT INTO road_networks (network, source_states, source_latest, nodes, edges,"
        " components, main_component, main_nodes, max_speed_kmh)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (network) DO UPDATE SET source_states = EXCLUDED.source_states,"
        " source_latest = EXCLUDED.source_latest, built_at = now(), nodes = EXCLUDED.nodes,"
        " edges = EXCLUDED.edges, components = EXCLUDED.components,"
        " main_component = EXCLUDED.main_component, main_nodes = EXCLUDED.main_nodes,"
        " max_speed_kmh = EXCLUDED.max_speed_kmh RETURNING *",
        name, states, latest, len(uniq), len(lines), len(labels), main + 1, int(sizes.max()),
        float(speed.max()))
    return _network(row)
