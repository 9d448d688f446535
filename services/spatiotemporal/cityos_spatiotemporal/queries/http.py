"""The query engine's HTTP routes: POST a query body (areas and routes are GeoJSON), or GET
the per-vehicle ones; results with geometry come back as GeoJSON."""

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.params import Parameter

from cityos_contracts.stquery import (
    BoxQuery,
    BoxSelection,
    CellCountQuery,
    CellCounts,
    DeviationQuery,
    Deviations,
    MatchQuery,
    NearestQuery,
    NearestResult,
    ObservationPage,
    RangeQuery,
    ReachableArea,
    ReachableQuery,
    StayPointParams,
    StayPointQuery,
    StayPoints,
    Trajectory,
)
from cityos_kit.auth import current_principal, require_scope, scope
from cityos_spatiotemporal.queries import (
    boxselect,
    deviation,
    isochrone,
    limits,
    matching,
    nearest,
    network,
    ranges,
    stays,
    trajectory,
)

READ = scope("stquery:read")
GEOJSON = "application/geo+json"
Window = Annotated[datetime, Parameter(description="ISO 8601 time with a zone")]


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.store.pool
    return pool


@post("/query/range", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def range_query(data: RangeQuery, state: State) -> ObservationPage:
    """Observations of a dataset in a box or polygon and a time window (at most 7 days), with
    attribute filters, oldest first; page with `next_cursor`."""
    return await ranges.observations(_pool(state), data)


@post("/query/cells", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def cell_query(data: CellCountQuery, state: State) -> CellCounts:
    """Observation counts per grid cell (square or H3) and time bucket, for heat maps."""
    return await ranges.cell_counts(_pool(state), data)


@post("/query/nearest", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def nearest_query(data: NearestQuery, state: State) -> NearestResult:
    """The k nearest mobile subjects (fresh latest positions) or static entities to a point."""
    return await nearest.nearest(_pool(state), data)


@get("/datasets/{dataset:str}/subjects/{subject:str}/trajectory", tags=["queries"], opt=READ,
     media_type=GEOJSON)
async def trajectory_query(
    dataset: str, subject: str, state: State, start: Window, end: Window,
    max_speed_kmh: Annotated[float, Parameter(gt=0, le=1000)] = 200.0,
) -> Trajectory:
    """One subject's track between two times, cleaned: sorted, duplicates and impossible jumps
    (faster than max_speed_kmh) removed; a LineString with a time per point."""
    return await trajectory.trajectory(_pool(state), dataset, subject, start, end,
                                       max_speed_kmh)


@get("/datasets/{dataset:str}/subjects/{subject:str}/staypoints", tags=["stay points"],
     opt=READ, media_type=GEOJSON)
async def subject_staypoints(
    dataset: str, subject: str, state: State, start: Window, end: Window,
    distance_m: Annotated[float, Parameter(gt=0, le=5000)] = 200.0,
    duration_s: Annotated[float, Parameter(gt=0, le=86400)] = 1200.0,
    max_gap_s: Annotated[float, Parameter(gt=0, le=86400)] = 900.0,
    include_last: bool = False,
) -> StayPoints:
    """One vehicle's stay points in a window, computed now from its fixes."""
    query = StayPointQuery(dataset=dataset, start=start, end=end, subjects=[subject],
                           params=StayPointParams(distance_m, duration_s, max_gap_s,
                                                  include_last))
    return await stays.on_demand(_pool(state), query)


@post("/query/staypoints", tags=["stay points"], opt=READ, media_type=GEOJSON, status_code=200)
async def staypoints_query(data: StayPointQuery, state: State,
                           request: Request[Any, Any, Any]) -> StayPoints:
    """Stay points of some vehicles or a whole fleet (window of at most 2 days), computed now;
    `store` (scope stquery:write) keeps them under their parameters."""
    if data.store:
        require_scope(current_principal(request), "stquery:write")
    return await stays.on_demand(_pool(state), data)


@get("/datasets/{dataset:str}/staypoints", tags=["stay points"], opt=READ, media_type=GEOJSON)
async def stored_staypoints(
    dataset: str, state: State, start: Window, end: Window,
    subject: Annotated[list[str] | None, Parameter(description="repeat for several")] = None,
    include_open: bool = False,
    limit: Annotated[int, Parameter(ge=1, le=10000)] = 1000,
) -> StayPoints:
    """The stay points the engine keeps up to date as fixes arrive (default parameters),
    arriving in the window; `include_open` adds stays the vehicle has not left yet."""
    params = StayPointParams(include_last=include_open)
    async with limits.bounded(_pool(state)) as conn:
        rows = await stays.stored(conn, dataset, start, end, subject, params, limit)
    return StayPoints(features=[r.feature(dataset) for r in rows], params=params)


@post("/query/staypoints/match", tags=["stay points"], opt=READ, media_type=GEOJSON,
      status_code=200)
async def match_query(data: MatchQuery, state: State) -> StayPoints:
    """Stay points matched to enterprises (status at the time), POIs of given kinds, or
    nothing; flags closed or suspended enterprises, expired licences and stops at nothing."""
    return await matching.match(_pool(state), data)


@post("/query/deviation", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def deviation_query(data: DeviationQuery, state: State) -> Deviations:
    """When and where a vehicle left its declared route by more than a distance for more than
    a time, and when it came back."""
    return await deviation.deviations(_pool(state), data)


@post("/query/reachable", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def reachable_query(data: ReachableQuery, state: State) -> ReachableArea:
    """The area reachable within N minutes on a road network, and the intersections on its
    boundary (where to intercept)."""
    return await isochrone.reachable(_pool(state), data)


@get("/datasets/{dataset:str}/network", tags=["queries"], opt=READ)
async def network_info(dataset: str, state: State) -> dict[str, Any]:
    """The routing topology of a road network dataset (built now if its roads changed)."""
    return (await network.ensure(_pool(state), dataset)).stats()


@post("/query/box", tags=["queries"], opt=READ, media_type=GEOJSON, status_code=200)
async def box_query(data: BoxQuery, state: State) -> BoxSelection:
    """Everything inside a drawn polygon, grouped by kind: entities, mobile resources' latest
    positions, recent media (open incidents: see boxselect.register_source)."""
    return await boxselect.box_select(_pool(state), data)


ROUTES = [range_query, cell_query, nearest_query, trajectory_query, subject_staypoints,
          staypoints_query, stored_staypoints, match_query, deviation_query, reachable_query,
          network_info, box_query]
