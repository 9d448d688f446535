"""Queries of the spatio-temporal engine and their results (HTTP bodies and NATS request/reply).

Results with geometry are GeoJSON FeatureCollections (WGS84 lon/lat); the `schema` tag and any
summary fields ride along as foreign members, which GeoJSON readers ignore. Times are ISO 8601
with a zone; distances are metres, durations seconds, speeds km/h.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

Geometry = dict[str, Any]  # a GeoJSON geometry in WGS84 lon/lat
Lon = Annotated[float, Meta(ge=-180, le=180)]
Lat = Annotated[float, Meta(ge=-90, le=90)]
BBoxList = Annotated[list[float], Meta(min_length=4, max_length=4,
                                       description="[west, south, east, north]")]
PageSize = Annotated[int, Meta(ge=1, le=10_000)]
Metres = Annotated[float, Meta(gt=0, le=50_000)]
Seconds = Annotated[float, Meta(ge=0, le=7 * 86400)]


# -- shared pieces ------------------------------------------------------------------------------


class ObservationFilter(Struct, frozen=True, forbid_unknown_fields=True):
    """Conditions on an observation's attributes, all of which must hold."""

    speed_kmh_min: float | None = None
    speed_kmh_max: float | None = None
    value_min: float | None = None
    value_max: float | None = None
    subjects: Annotated[list[str], Meta(max_length=1000)] | None = None
    # JSON containment on the kept attributes, e.g. {"driver": "王五"}
    attrs: dict[str, Any] | None = None


class StayPointParams(Struct, frozen=True, forbid_unknown_fields=True):
    """Li et al. (2008) as in trackintel's `generate_staypoints(method="sliding")`.

    A stay is a run of fixes within `distance_m` of its first fix lasting at least
    `duration_s`; consecutive fixes further apart in time than `max_gap_s` break a run.
    `include_last` also reports a stay the vehicle has not left yet (marked `open`).
    """

    distance_m: Annotated[float, Meta(gt=0, le=5000)] = 200.0
    duration_s: Annotated[float, Meta(gt=0, le=86400)] = 1200.0
    max_gap_s: Annotated[float, Meta(gt=0, le=86400)] = 900.0
    include_last: bool = False

    def key(self) -> str:
        """How stored stay points computed with these parameters are told apart."""
        return (f"d{self.distance_m:g}_t{self.duration_s:g}_g{self.max_gap_s:g}"
                f"{'_last' if self.include_last else ''}")


class QueryError(Struct, frozen=True, tag_field="schema", tag="cityos.stquery.error.v1"):
    """The reply to a NATS query that could not be answered: an HTTP-like status and reason."""

    status: int
    detail: str


# -- 1. range ---------------------------------------------------------------------------------


class RangeQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                 tag="cityos.stquery.range_query.v1"):
    """Observations of a dataset inside a box or polygon and a time window, oldest first.

    Give `bbox` or `polygon`. Pages are keyset-paged by (ts, subject): pass the previous
    page's `next_cursor` as `cursor`.
    """

    dataset: str
    start: datetime
    end: datetime
    bbox: BBoxList | None = None
    polygon: Geometry | None = None
    filters: ObservationFilter = msgspec.field(default_factory=ObservationFilter)
    limit: PageSize = 1000
    cursor: str | None = None


class ObservationProps(Struct, frozen=True):
    subject: str
    ts: datetime
    speed_kmh: float | None = None
    heading: float | None = None
    value: float | None = None
    attrs: dict[str, Any] | None = None


class ObservationFeature(Struct, frozen=True):
    geometry: Geometry
    properties: ObservationProps
    type: Literal["Feature"] = "Feature"


class ObservationPage(Struct, frozen=True, tag_field="schema",
                      tag="cityos.stquery.observation_page.v1"):
    features: list[ObservationFeature]
    next_cursor: str | None = None  # None on the last page
    type: Literal["FeatureCollection"] = "FeatureCollection"


class CellCountQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.stquery.cell_count_query.v1"):
    """Counts of observations per grid cell and time bucket: the raw material of heat maps.

    `grid="square"`: cells of `cell_m` metres; `grid="h3"`: H3 cells of `h3_resolution`.
    """

    dataset: str
    start: datetime
    end: datetime
    bbox: BBoxList | None = None
    polygon: Geometry | None = None
    filters: ObservationFilter = msgspec.field(default_factory=ObservationFilter)
    grid: Literal["square", "h3"] = "square"
    cell_m: Annotated[float, Meta(ge=50, le=10_000)] = 500.0
    h3_resolution: Annotated[int, Meta(ge=5, le=10)] = 8
    bucket_s: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600


class CellCountProps(Struct, frozen=True):
    cell: str
    bucket: datetime  # start of the time bucket
    count: int


class CellCountFeature(Struct, frozen=True):
    geometry: Geometry
    properties: CellCountProps
    type: Literal["Feature"] = "Feature"


class CellCounts(Struct, frozen=True, tag_field="schema", tag="cityos.stquery.cell_counts.v1"):
    features: list[CellCountFeature]
    total: int
    type: Literal["FeatureCollection"] = "FeatureCollection"


# -- 2. nearest -------------------------------------------------------------------------------


class NearestQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                   tag="cityos.stquery.nearest_query.v1"):
    """The k nearest mobile subjects (latest position no older than `max_age_s`) of an
    observation dataset, or static entities (current state) of an entity dataset."""

    dataset: str
    lon: Lon
    lat: Lat
    k: Annotated[int, Meta(ge=1, le=100)] = 5
    kind: Literal["mobile", "static"] = "mobile"
    max_age_s: Seconds = 600.0
    max_distance_m: Metres | None = None
    category: str | None = None  # static entities of one category only
    attrs: dict[str, Any] | None = None  # JSON containment, e.g. {"on_duty": true}


class NearestProps(Struct, frozen=True):
    dataset: str
    id: str  # the subject or entity id
    distance_m: float
    rank: int
    ts: datetime | None = None  # mobile: when the position was fixed
    name: str | None = None
    category: str | None = None
    attrs: dict[str, Any] | None = None


class NearestFeature(Struct, frozen=True):
    geometry: Geometry
    properties: NearestProps
    type: Literal["Feature"] = "Feature"


class NearestResult(Struct, frozen=True, tag_field="schema",
                    tag="cityos.stquery.nearest_result.v1"):
    features: list[NearestFeature]
    type: Literal["FeatureCollection"] = "FeatureCollection"


# -- 3. trajectory ----------------------------------------------------------------------------


class TrajectoryProps(Struct, frozen=True):
    dataset: str
    subject: str
    times: list[datetime]  # one per coordinate of the line
    fixes: int  # fixes read
    duplicates: int  # removed: same subject and time
    out_of_order: int  # fixes that arrived out of time order (kept, sorted)
    jumps: int  # removed: implausible speed from the previous kept fix
    length_m: float
    speeds_kmh: list[float | None] = msgspec.field(default_factory=list)


class Trajectory(Struct, frozen=True, tag_field="schema", tag="cityos.stquery.trajectory.v1"):
    """A GeoJSON Feature: a LineString (a Point if one fix is left) with a time per point."""

    geometry: Geometry
    properties: TrajectoryProps
    type: Literal["Feature"] = "Feature"


# -- 4, 5. stay points and their matching ------------------------------------------------------


class StayPointQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.stquery.staypoint_query.v1"):
    """Stay points computed now from the stored fixes, of some subjects or the whole fleet.

    With `store`, the result replaces what was stored for these subjects, window and
    parameters (the stay points the engine keeps up to date as fixes arrive use the defaults).
    """

    dataset: str
    start: datetime
    end: datetime
    subjects: Annotated[list[str], Meta(min_length=1, max_length=10_000)] | None = None
    params: StayPointParams = msgspec.field(default_factory=StayPointParams)
    store: bool = False


class EnterpriseMatch(Struct, frozen=True):
    dataset: str
    entity_id: str
    distance_m: float
    name: str | None = None
    status: str | None = None  # as it was at the stay's arrival
    licence_valid: bool | None = None  # None: no licence date on record


class PoiMatch(Struct, frozen=True):
    dataset: str
    entity_id: str
    distance_m: float
    name: str | None = None
    kind: str | None = None


StayFlag = Literal["closed_enterprise", "suspended_enterprise", "licence_expired",
                   "no_enterprise_no_poi"]


class StayPointProps(Struct, frozen=True):
    dataset: str
    subject: str
    arrival: datetime
    departure: datetime  # time of the first fix outside the stay (the last fix if open)
    duration_s: float
    fixes: int
    open: bool = False  # the vehicle has not left yet
    # Filled by matching: "enterprise", "poi" or "nothing"; None when not matched.
    match: Literal["enterprise", "poi", "nothing"] | None = None
    enterprises: list[EnterpriseMatch] = msgspec.field(default_factory=list)
    pois: list[PoiMatch] = msgspec.field(default_factory=list)
    flags: list[StayFlag] = msgspec.field(default_factory=list)


class StayPointFeature(Struct, frozen=True):
    geometry: Geometry  # the centre: mean of the stay's fixes
    properties: StayPointProps
    type: Literal["Feature"] = "Feature"


class StayPoints(Struct, frozen=True, tag_field="schema", tag="cityos.stquery.staypoints.v1"):
    features: list[StayPointFeature]
    params: StayPointParams
    fixes: int = 0  # fixes the computation read (0 for stored stay points)
    type: Literal["FeatureCollection"] = "FeatureCollection"


class MatchQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                 tag="cityos.stquery.match_query.v1"):
    """Stay points in a window matched to enterprises (status at the time of the stay), to
    POIs of given kinds, or to nothing.

    `source="stored"` matches the stay points the engine keeps; "compute" computes them now.
    Enterprise status is read from attribute `status_field` (else the entity's category);
    licence validity from the date in attribute `licence_field`. A POI's kind is its category.
    """

    dataset: str
    start: datetime
    end: datetime
    enterprise_datasets: Annotated[list[str], Meta(max_length=20)]
    poi_datasets: Annotated[list[str], Meta(max_length=20)] = msgspec.field(default_factory=list)
    poi_kinds: list[str] | None = None  # None: any category
    subjects: Annotated[list[str], Meta(min_length=1, max_length=10_000)] | None = None
    source: Literal["stored", "compute"] = "stored"
    params: StayPointParams = msgspec.field(default_factory=StayPointParams)
    enterprise_radius_m: Annotated[float, Meta(gt=0, le=2000)] = 150.0
    poi_radius_m: Annotated[float, Meta(gt=0, le=2000)] = 100.0
    status_field: str = "status"
    licence_field: str = "licence_valid_until"
    limit: PageSize = 1000


# -- 6. route deviation -------------------------------------------------------------------------


class DeviationQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.stquery.deviation_query.v1"):
    """A vehicle's track against its declared route (a LineString, or waypoints joined by
    straight lines): where it was more than `max_distance_m` off for at least
    `min_duration_s`."""

    dataset: str
    subject: str
    start: datetime
    end: datetime
    route: Geometry | None = None
    waypoints: Annotated[list[list[float]], Meta(min_length=2, max_length=10_000)] | None = None
    max_distance_m: Annotated[float, Meta(gt=0, le=20_000)] = 500.0
    min_duration_s: Annotated[float, Meta(ge=0, le=86400)] = 120.0
    max_speed_kmh: Annotated[float, Meta(gt=0, le=1000)] = 200.0


class DeviationProps(Struct, frozen=True):
    left_at: datetime  # when the track crossed the distance threshold outward
    left_lon: float
    left_lat: float
    duration_s: float
    max_distance_m: float
    fixes: int  # fixes off the route
    returned_at: datetime | None = None  # None: not back on the route by the window's end
    returned_lon: float | None = None
    returned_lat: float | None = None


class DeviationFeature(Struct, frozen=True):
    geometry: Geometry  # the off-route part of the track
    properties: DeviationProps
    type: Literal["Feature"] = "Feature"


class Deviations(Struct, frozen=True, tag_field="schema", tag="cityos.stquery.deviations.v1"):
    features: list[DeviationFeature]
    fixes: int  # cleaned fixes compared with the route
    type: Literal["FeatureCollection"] = "FeatureCollection"


# -- 7. reachable area --------------------------------------------------------------------------


class ReachableQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.stquery.reachable_query.v1"):
    """Where a vehicle at (lon, lat) can be within `minutes` on the road network `network`
    (an entity dataset of LineStrings with a `speed_kmh` attribute)."""

    network: str
    lon: Lon
    lat: Lat
    minutes: Annotated[float, Meta(gt=0, le=30)] = 5.0
    max_snap_m: Annotated[float, Meta(gt=0, le=2000)] = 500.0
    # Start anyway when the nearest road is on a piece cut off from the main network.
    allow_disconnected: bool = False


class ReachableProps(Struct, frozen=True):
    kind: Literal["area", "boundary", "start"]
    seconds: float  # area: the budget; boundary: time to reach the intersection; start: 0
    node: int | None = None  # boundary: the intersection's node id in the network
    degree: int | None = None  # boundary: roads meeting there
    roads_reached: int | None = None  # area: road pieces reached


class ReachableFeature(Struct, frozen=True):
    geometry: Geometry
    properties: ReachableProps
    type: Literal["Feature"] = "Feature"


class ReachableArea(Struct, frozen=True, tag_field="schema",
                    tag="cityos.stquery.reachable_area.v1"):
    """The area (a polygon around the roads reached), the start snapped onto the network, and
    the intersections on the area's boundary: the places to intercept."""

    features: list[ReachableFeature]
    snap_distance_m: float
    type: Literal["FeatureCollection"] = "FeatureCollection"


# -- 8. box select ------------------------------------------------------------------------------


class BoxQuery(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
               tag="cityos.stquery.box_query.v1"):
    """Everything inside a drawn polygon (or box), grouped by kind ("wartime mode")."""

    bbox: BBoxList | None = None
    polygon: Geometry | None = None
    datasets: list[str] | None = None  # None: every dataset
    mobile_max_age_s: Seconds = 900.0
    media_since_s: Seconds = 86400.0
    limit_per_group: Annotated[int, Meta(ge=1, le=5000)] = 500


class BoxProps(Struct, frozen=True):
    kind: Literal["entity", "mobile", "media", "incident"]
    group: str  # "<dataset>" or "<dataset>/<category>"
    dataset: str
    id: str
    name: str | None = None
    category: str | None = None
    ts: datetime | None = None  # mobile: position time; media: item time
    attrs: dict[str, Any] | None = None


class BoxFeature(Struct, frozen=True):
    geometry: Geometry | None
    properties: BoxProps
    type: Literal["Feature"] = "Feature"


class BoxGroup(Struct, frozen=True):
    kind: str
    group: str
    count: int  # inside the polygon
    returned: int  # features of the group in this answer (at most limit_per_group)


class BoxSelection(Struct, frozen=True, tag_field="schema",
                   tag="cityos.stquery.box_selection.v1"):
    features: list[BoxFeature]
    groups: list[BoxGroup]
    type: Literal["FeatureCollection"] = "FeatureCollection"
