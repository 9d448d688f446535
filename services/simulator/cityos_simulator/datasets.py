"""The datasets the simulator registers, owned by the departments that would supply them.

Owners are department codes from the city's units.json: JTJ (Transport Bureau) for roads and
vehicle GPS, STHJJ (Ecology and Environment Bureau) for air/noise sensors, GAJ (Public Security
Bureau) for traffic cameras and their clips.
"""

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec, FieldType

TZ = "Asia/Shanghai"  # our times carry +08:00; declared anyway as the zone of the demo city


def _f(name: str, type_: FieldType, required: bool = False, unit: str | None = None,
       description: str = "") -> FieldSpec:
    return FieldSpec(name=name, type=type_, required=required, unit=unit, description=description)


ROADS = DatasetRegistration(
    name="roads",
    title="道路网络 Road network",
    owner="JTJ",
    kind="entity",
    fields=[
        _f("road_id", "string", True, description="segment between two intersections"),
        _f("geometry", "geometry", True, description="LineString, WGS84"),
        _f("name", "string", True),
        _f("class", "string", True, description="expressway, arterial or local"),
        _f("speed_kmh", "number", True, "km/h", "design speed"),
        _f("oneway", "boolean"),
        _f("length_m", "number", description="metres"),
    ],
    mapping=FieldMapping(subject="road_id", geometry="geometry", name="name", category="class"),
    description="Road segments between intersections, for map matching and reachability.",
)

VEHICLE_GPS = DatasetRegistration(
    name="vehicle_gps",
    title="重点车辆GPS Vehicle GPS fixes",
    owner="JTJ",
    kind="observation",
    fields=[
        _f("plate", "string", True),
        _f("ts", "datetime", True),
        _f("lon", "number", True),
        _f("lat", "number", True),
        _f("speed_kmh", "number", unit="km/h"),
        _f("heading", "number", description="degrees clockwise from north"),
    ],
    mapping=FieldMapping(subject="plate", time="ts", lon="lon", lat="lat", speed="speed_kmh",
                         heading="heading"),
    assume_timezone=TZ,
    description="Positions of hazardous-goods, muck and service vehicles every ~10 s.",
)

ENV_SENSORS = DatasetRegistration(
    name="env_sensors",
    title="空气与噪声监测 Air and noise sensors",
    owner="STHJJ",
    kind="observation",
    fields=[
        _f("sensor_id", "string", True),
        _f("ts", "datetime", True),
        _f("lon", "number", True),
        _f("lat", "number", True),
        _f("pm25", "number", True, description="PM2.5 in µg/m³"),
        _f("noise_db", "number", description="sound level in dB(A)"),
    ],
    mapping=FieldMapping(subject="sensor_id", time="ts", lon="lon", lat="lat", value="pm25"),
    assume_timezone=TZ,
)

SENSOR_SITES = DatasetRegistration(
    name="sensor_sites",
    title="监测站点 Sensor sites",
    owner="STHJJ",
    kind="entity",
    fields=[
        _f("sensor_id", "string", True),
        _f("name", "string", True),
        _f("category", "string", description="roadside or background"),
        _f("lon", "number", True),
        _f("lat", "number", True),
    ],
    mapping=FieldMapping(subject="sensor_id", name="name", category="category", lon="lon",
                         lat="lat"),
)

CAMERAS = DatasetRegistration(
    name="cameras",
    title="交通监控点位 Traffic cameras",
    owner="GAJ",
    kind="entity",
    fields=[
        _f("camera_id", "string", True),
        _f("name", "string", True),
        _f("category", "string"),
        _f("lon", "number", True),
        _f("lat", "number", True),
    ],
    mapping=FieldMapping(subject="camera_id", name="name", category="category", lon="lon",
                         lat="lat"),
)

CAMERA_CLIPS = DatasetRegistration(
    name="camera_clips",
    title="视频片段 Camera clips",
    owner="GAJ",
    kind="media",
    fields=[
        _f("clip_id", "string", True, description="unique clip id; the media id"),
        _f("camera_id", "string", True),
        _f("ts", "datetime", True, description="clip start"),
        _f("lon", "number", True),
        _f("lat", "number", True),
        _f("uri", "string", True),
        _f("media_type", "string"),
        _f("duration_s", "integer", description="seconds"),
        _f("label", "string", description="what video analytics saw, empty when routine"),
    ],
    mapping=FieldMapping(subject="camera_id", time="ts", lon="lon", lat="lat", uri="uri",
                         media_type="media_type"),
    assume_timezone=TZ,
    description="Metadata of clips kept in object storage; the video itself stays there.",
)

# Registration order: entities first, so observations can refer to sites already known.
ALL = (ROADS, SENSOR_SITES, CAMERAS, VEHICLE_GPS, ENV_SENSORS, CAMERA_CLIPS)
