"""Validate rows against a dataset version and normalise them onto the platform's model.

Types are checked by msgspec against a Struct built from the registered schema (fast, in C);
the platform's rules come after: WGS84 lon/lat inside the city, timezone-aware times not in the
future, canonical units, no duplicate (subject, time) in a batch. A record that breaks a rule is
returned as a `Rejection` with a reason its owner can act on; nothing is dropped silently.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
from msgspec import Meta

from cityos_contracts.datasets import DatasetRegistration, FieldSpec
from cityos_contracts.records import Entity, EntityBatch, MediaBatch, MediaItem, ObservationBatch
from cityos_kit.city import BBox

FUTURE_TOLERANCE = timedelta(minutes=5)  # device clocks drift; more than this is an error
SPEED_TO_KMH = {"km/h": 1.0, "kmh": 1.0, "m/s": 3.6, "knots": 1.852, "kn": 1.852, "mph": 1.609344}

_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool,
    "geometry": dict[str, Any],
}


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: str
    record: dict[str, Any]

    @property
    def code(self) -> str:
        """A short, stable kind of reason for the batch summary (the reason has the values)."""
        for code, marker in REASON_CODES:
            if marker in self.reason:
                return code
        return "invalid"


REASON_CODES = (
    ("no_time_zone", "no time zone"), ("future_time", "in the future"),
    ("swapped_lon_lat", "look swapped"), ("outside_city", "outside the city"),
    ("not_wgs84", "not a WGS84"), ("duplicate", "duplicate"), ("duplicate", "appears twice"),
    ("missing_field", "missing"), ("unknown_field", "unknown field"),
    ("wrong_type", "Expected"), ("bad_geometry", "geometry"),
)


@dataclass
class Normalised:
    batch: ObservationBatch | EntityBatch | MediaBatch
    rejections: list[Rejection]
    mapped_optional_present: int = 0  # for the completeness metric
    mapped_optional_total: int = 0
    lags_s: list[float] = field(default_factory=list)  # arrival minus observation time


def row_type(registration: DatasetRegistration) -> type[msgspec.Struct]:
    """A Struct for one dataset version's records; unknown fields are rejected, not ignored."""
    aware = registration.assume_timezone is None
    specs: list[Any] = []
    for i, f in enumerate(registration.fields):
        kind = (Annotated[datetime, Meta(tz=True)] if aware else datetime) \
            if f.type == "datetime" else _TYPES[f.type]
        specs.append((f"f{i}", kind) if f.required else (f"f{i}", kind | None, None))
    # Attributes are f0, f1...: source columns are often Chinese or not identifiers at all.
    rename = {f"f{i}": f.name for i, f in enumerate(registration.fields)}
    return msgspec.defstruct(f"{registration.name}_row", specs, kw_only=True, rename=rename,
                             forbid_unknown_fields=True)


def check_columns(registration: DatasetRegistration, columns: list[str]) -> str | None:
    """A CSV header problem, said once for the batch rather than once per row."""
    known = {f.name for f in registration.fields}
    missing = [f.name for f in registration.fields if f.required and f.name not in columns]
    extra = [c for c in columns if c not in known]
    problems = []
    if missing:
        problems.append("missing required column(s) " + ", ".join(f"`{c}`" for c in missing))
    if extra:
        problems.append("column(s) not in the dataset's schema " +
                        ", ".join(f"`{c}`" for c in extra))
    return "; ".join(problems) or None


class Normaliser:
    def __init__(self, registration: DatasetRegistration, version: int, bbox: BBox) -> None:
        self.reg = registration
        self.version = version
        self.bbox = bbox
        self.type = row_type(registration)
        self.zone = ZoneInfo(registration.assume_timezone) if registration.assume_timezone else None
        self.fields: dict[str, FieldSpec] = {f.name: f for f in registration.fields}
        self._attr = {f.name: f"f{i}" for i, f in enumerate(registration.fields)}
        m = registration.mapping
        self.speed_factor = 1.0
        if m.speed and (unit := self.fields[m.speed].unit):
            self.speed_factor = SPEED_TO_KMH[unit.lower()]
        mapped = {m.subject, m.time, m.lon, m.lat, m.geometry, m.name, m.category, m.speed,
                  m.heading, m.value, m.uri, m.media_type}
        self.attr_fields = [f for f in self.fields if f not in mapped]
        self.optional_mapped = [f for f in mapped if f and not self.fields[f].required]

    def get(self, record: Any, field: str | None) -> Any:
        """A source field's value (None for an unmapped role)."""
        return getattr(record, self._attr[field]) if field else None

    def decode(self, rows: list[dict[str, Any]], numbers: list[int], lax: bool
               ) -> tuple[list[tuple[int, Any, dict[str, Any]]], list[Rejection]]:
        """Typed records (row number, struct, raw); CSV text is converted leniently."""
        try:  # fast path: the whole batch at once
            typed = msgspec.convert(rows, list[self.type], strict=not lax)  # type: ignore[name-defined]
            return list(zip(numbers, typed, rows, strict=True)), []
        except msgspec.ValidationError:
            pass
        good, bad = [], []
        for number, row in zip(numbers, rows, strict=True):
            try:
                good.append((number, msgspec.convert(row, self.type, strict=not lax), row))
            except msgspec.ValidationError as exc:
                bad.append(Rejection(number, _explain(exc), row))
        return good, bad

    def _time(self, value: datetime | None) -> datetime | str:
        if value is None:
            return "time is missing"
        if value.tzinfo is None:
            if self.zone is None:
                return "time has no time zone; add an offset such as +08:00"
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(UTC)

    def _place(self, lon: Any, lat: Any) -> str | None:
        if lon is None or lat is None:
            return "lon/lat are missing"
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            if -90 <= lon <= 90 and -180 <= lat <= 180 and self.bbox.contains(lat, lon):
                return f"lon/lat look swapped (lon={lon}, lat={lat}); send lon first"
            return f"lon={lon}, lat={lat} is not a WGS84 position"
        if not self.bbox.contains(lon, lat):
            if self.bbox.contains(lat, lon):
                return f"lon/lat look swapped (lon={lon}, lat={lat}); send lon first"
            return f"lon={lon}, lat={lat} is outside the city"
        return None

    def normalise(self, batch_id: str, rows: list[dict[str, Any]], numbers: list[int],
                  lax: bool, received_at: datetime) -> Normalised:
        records, rejections = self.decode(rows, numbers, lax)
        kind = self.reg.kind
        if kind == "observation":
            return self._observations(batch_id, records, rejections, received_at)
        if kind == "entity":
            return self._entities(batch_id, records, rejections, received_at)
        return self._media(batch_id, records, rejections, received_at)

    def _completeness(self, out: Normalised, record: Any) -> None:
        out.mapped_optional_total += len(self.optional_mapped)
        out.mapped_optional_present += sum(
            self.get(record, f) is not None for f in self.optional_mapped)

    def _attrs(self, record: Any) -> dict[str, Any] | None:
        attrs = {f: v for f in self.attr_fields if (v := self.get(record, f)) is not None}
        return attrs or None

    def _observations(self, batch_id: str, records: list[tuple[int, Any, dict[str, Any]]],
                      rejections: list[Rejection], received_at: datetime) -> Normalised:
        m = self.reg.mapping
        latest = received_at + FUTURE_TOLERANCE
        cols: dict[str, list[Any]] = {k: [] for k in
                                      ("subject", "ts", "lon", "lat", "speed_kmh", "heading",
                                       "value", "attrs")}
        seen: set[tuple[str, datetime]] = set()
        out = Normalised(ObservationBatch("", "", 0, "", [], [], [], []), rejections)
        for number, rec, raw in records:
            ts = self._time(self.get(rec, m.time))
            if isinstance(ts, str):
                rejections.append(Rejection(number, ts, raw))
                continue
            if ts > latest:
                rejections.append(Rejection(number, f"time {ts.isoformat()} is in the future", raw))
                continue
            lon, lat = self.get(rec, m.lon), self.get(rec, m.lat)
            if problem := self._place(lon, lat):
                rejections.append(Rejection(number, problem, raw))
                continue
            subject = str(self.get(rec, m.subject))
            if (subject, ts) in seen:
                rejections.append(Rejection(number, f"duplicate of an earlier record of "
                                                    f"`{subject}` at {ts.isoformat()}", raw))
                continue
            seen.add((subject, ts))
            speed = self.get(rec, m.speed)
            cols["subject"].append(subject)
            cols["ts"].append(ts)
            cols["lon"].append(float(lon))
            cols["lat"].append(float(lat))
            cols["speed_kmh"].append(None if speed is None else speed * self.speed_factor)
            cols["heading"].append(self.get(rec, m.heading))
            cols["value"].append(self.get(rec, m.value))
            cols["attrs"].append(self._attrs(rec))
            out.lags_s.append((received_at - ts).total_seconds())
            self._completeness(out, rec)
        out.batch = ObservationBatch(
            batch_id=batch_id, dataset=self.reg.name, version=self.version, owner=self.reg.owner,
            **cols)
        return out

    def _geometry(self, rec: Any) -> dict[str, Any] | str | None:
        m = self.reg.mapping
        if m.geometry and (geometry := self.get(rec, m.geometry)) is not None:
            return _check_geometry(geometry, self.bbox)
        if m.lon and m.lat:
            lon, lat = self.get(rec, m.lon), self.get(rec, m.lat)
            if lon is None and lat is None:
                return None
            if problem := self._place(lon, lat):
                return problem
            return {"type": "Point", "coordinates": [float(lon), float(lat)]}
        return None

    def _entities(self, batch_id: str, records: list[tuple[int, Any, dict[str, Any]]],
                  rejections: list[Rejection], received_at: datetime) -> Normalised:
        m = self.reg.mapping
        entities: list[Entity] = []
        seen: set[str] = set()
        out = Normalised(EntityBatch(batch_id, self.reg.name, self.version, self.reg.owner, []),
                         rejections)
        for number, rec, raw in records:
            geometry = self._geometry(rec)
            if isinstance(geometry, str):
                rejections.append(Rejection(number, geometry, raw))
                continue
            valid_from = self._time(self.get(rec, m.time)) if m.time else received_at
            if isinstance(valid_from, str):
                if m.time and self.get(rec, m.time) is None:
                    valid_from = received_at
                else:
                    rejections.append(Rejection(number, valid_from, raw))
                    continue
            entity_id = str(self.get(rec, m.subject))
            if entity_id in seen:
                rejections.append(Rejection(number, f"entity `{entity_id}` appears twice", raw))
                continue
            seen.add(entity_id)
            entities.append(Entity(
                entity_id=entity_id,
                name=self.get(rec, m.name),
                category=self.get(rec, m.category),
                geometry=geometry, valid_from=valid_from, attrs=self._attrs(rec) or {},
            ))
            self._completeness(out, rec)
        out.batch = EntityBatch(batch_id, self.reg.name, self.version, self.reg.owner, entities)
        return out

    def _media(self, batch_id: str, records: list[tuple[int, Any, dict[str, Any]]],
               rejections: list[Rejection], received_at: datetime) -> Normalised:
        m = self.reg.mapping
        items: list[MediaItem] = []
        out = Normalised(MediaBatch(batch_id, self.reg.name, self.version, self.reg.owner, []),
                         rejections)
        for number, rec, raw in records:
            ts = self._time(self.get(rec, m.time))
            if isinstance(ts, str):
                rejections.append(Rejection(number, ts, raw))
                continue
            if ts > received_at + FUTURE_TOLERANCE:
                rejections.append(Rejection(number, f"time {ts.isoformat()} is in the future", raw))
                continue
            geometry = self._geometry(rec)
            if isinstance(geometry, str):
                rejections.append(Rejection(number, geometry, raw))
                continue
            uri = self.get(rec, m.uri)
            if not uri:
                rejections.append(Rejection(number, "the media reference (uri) is missing", raw))
                continue
            lon, lat = geometry["coordinates"] if geometry else (None, None)
            items.append(MediaItem(
                media_id=hashlib.sha1(f"{self.reg.name}|{uri}".encode()).hexdigest()[:20],
                subject=str(self.get(rec, m.subject)), ts=ts, lon=lon, lat=lat, uri=uri,
                media_type=self.get(rec, m.media_type),
                attrs=self._attrs(rec) or {},
            ))
            out.lags_s.append((received_at - ts).total_seconds())
            self._completeness(out, rec)
        out.batch = MediaBatch(batch_id, self.reg.name, self.version, self.reg.owner, items)
        return out


def _explain(exc: msgspec.ValidationError) -> str:
    """msgspec says `Expected `float`, got `str` - at `$.lat``; keep it, drop the `$.`."""
    text = str(exc).replace("`$.", "`").replace("at `$`", "in the record")
    return text.replace("Expected `datetime` with a timezone component",
                        "time has no time zone (add an offset such as +08:00)")


def _check_geometry(geometry: dict[str, Any], bbox: BBox) -> dict[str, Any] | str:
    from shapely.geometry import shape

    try:
        shp = shape(geometry)
    except Exception as exc:  # shapely raises several types for bad GeoJSON
        return f"geometry is not valid GeoJSON: {exc}"
    if shp.is_empty:
        return "geometry is empty"
    if not shp.is_valid:
        from shapely.validation import explain_validity

        return f"geometry is invalid: {explain_validity(shp)}"
    west, south, east, north = shp.bounds
    if not (bbox.contains(west, south) and bbox.contains(east, north)):
        return f"geometry (bounds {west:.5f},{south:.5f},{east:.5f},{north:.5f}) is outside the city"
    return geometry
