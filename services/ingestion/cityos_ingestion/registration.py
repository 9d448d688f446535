"""Check a dataset registration before it is stored: the mapping must fit the platform's model."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cityos_contracts.datasets import DatasetRegistration
from cityos_ingestion.normalise import SPEED_TO_KMH

# Which mapped roles each kind needs, and the field type each role must have.
ROLE_TYPES = {
    "time": ("datetime",), "lon": ("number",), "lat": ("number",), "geometry": ("geometry",),
    "speed": ("number", "integer"), "heading": ("number", "integer"),
    "value": ("number", "integer"), "uri": ("string",),
}


def problems(reg: DatasetRegistration, departments: set[str]) -> list[str]:
    found: list[str] = []
    fields = {f.name: f for f in reg.fields}
    if len(fields) != len(reg.fields):
        found.append("a field name appears twice")
    if reg.owner not in departments:
        found.append(f"owner `{reg.owner}` is not a department of this city")
    mapping = {role: name for role in reg.mapping.__struct_fields__
               if (name := getattr(reg.mapping, role)) is not None}
    for role, name in mapping.items():
        if name not in fields:
            found.append(f"mapping.{role} names `{name}`, which is not a field")
        elif role in ROLE_TYPES and fields[name].type not in ROLE_TYPES[role]:
            found.append(f"mapping.{role} field `{name}` must be of type "
                         f"{' or '.join(ROLE_TYPES[role])}, not {fields[name].type}")
    has_place = ("lon" in mapping and "lat" in mapping) or "geometry" in mapping
    if ("lon" in mapping) != ("lat" in mapping):
        found.append("map both lon and lat, or neither")
    if reg.kind in ("observation", "media") and "time" not in mapping:
        found.append(f"a {reg.kind} dataset must map a time field")
    if reg.kind == "observation" and not ("lon" in mapping and "lat" in mapping):
        found.append("an observation dataset must map lon and lat")
    if reg.kind == "entity" and not has_place:
        found.append("an entity dataset must map a geometry or lon and lat")
    if reg.kind == "media" and "uri" not in mapping:
        found.append("a media dataset must map the uri of the item it describes")
    speed = reg.mapping.speed
    if speed in fields and (unit := fields[speed].unit) and unit.lower() not in SPEED_TO_KMH:
        found.append(f"unit `{unit}` of `{speed}` is not one of {', '.join(SPEED_TO_KMH)}")
    if reg.assume_timezone:
        try:
            ZoneInfo(reg.assume_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(f"assume_timezone `{reg.assume_timezone}` is not a known time zone")
    return found
