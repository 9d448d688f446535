"""Validate rows against a dataset version and normalise them onto the platform's model.

Types are checked by msgspec against a Struct built from the registered schema (fast, in C);
the platform's rules come after: WGS84 lon/lat inside the city, timezone-aware times not in the
future, canonical units, no duplicate (subject, time) in a batch. A record that breaks a rule is
returned as a `Rejection` with a reason its owner can act on; nothing is dropped silently.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
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
    record: Any  # the record as sent: a dict, or the typed record of the fast path

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
    ("wrong_type", "Expected"), ("bad_value", "Invalid"), ("bad_geometry", "geometry"),
)


@dataclass
class Normalised:
    batch: ObservationBatch | EntityBatch | MediaBatch
    rejections: list[Rejection]
    mapped_optional_present: int = 0  # for the completeness metric
    mapped_optional_total: int = 0
    # Freshness: arrival minus observation time, summed over the accepted records.
    lag_sum_s: float = 0.0
    lag_max_s: float | None = None
    lag_count: int = 0

    def add_lag(self, lag_s: float) -> None:
        self.lag_sum_s += lag_s
        self.lag_count += 1
        self.lag_max_s = lag_s if self.lag_max_s is None else max(self.lag_max_s, lag_s)


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
               ) -> tuple[list[tuple[int, Any, Any]], list[Rejection]]:
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

    def decode_array(self, array: bytes) -> list[tuple[int, Any, Any]] | None:
        """Fast path: a JSON array straight into typed records; None if any record is bad."""
        try:
            typed = msgspec.json.decode(array, type=list[self.type])  # type: ignore[name-defined]
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        return [(i, rec, rec) for i, rec in enumerate(typed, 1)]

    def _time(self, value: datetime | None) -> datetime | str:
        """Aware times keep their offset (Postgres stores the instant); naive ones get the zone."""
        if value is None:
            return "time is missing"
        if value.tzinfo is None:
            if self.zone is None:
                return "time has no time zone; add an offset such as +08:00"
            return value.replace(tzinfo=self.zone)
        return value

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

    def normalise(self, batch_id: str, records: list[tuple[int, Any, Any]],
                  rejections: list[Rejection], received_at: datetime) -> Normalised:
        """Apply the platform's rules to typed records (row number, record, raw form)."""
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

    def _column(self, recs: list[Any], field: str | None) -> list[Any] | None:
        if field is None:
            return None
        return list(map(attrgetter(self._attr[field]), recs))

    def _observations(self, batch_id: str, records: list[tuple[int, Any, Any]],
                      rejections: list[Rejection], received_at: datetime) -> Normalised:
        """Column at a time: GPS feeds send millions of these, so checks are vectorised."""
        m = self.reg.mapping
        recs = [r[1] for r in records]
        subject = [str(v) for v in self._column(recs, m.subject) or []]
        ts = self._column(recs, m.time) or []
        lon = np.array([np.nan if v is None else v for v in self._column(recs, m.lon) or []],
                       dtype=np.float64)
        lat = np.array([np.nan if v is None else v for v in self._column(recs, m.lat) or []],
                       dtype=np.float64)
        b = self.bbox
        ok = (lon >= b.west) & (lon <= b.east) & (lat >= b.south) & (lat <= b.north)
        latest = received_at + FUTURE_TOLERANCE
        seen: set[tuple[str, datetime]] = set()
        keep: list[int] = []
        for k, (number, _, raw) in enumerate(records):
            t = ts[k]
            if t is None or t.tzinfo is None:
                t = self._time(t)
                if isinstance(t, str):
                    rejections.append(Rejection(number, t, raw))
                    continue
                ts[k] = t
            if t > latest:
                rejections.append(Rejection(number, f"time {t.isoformat()} is in the future", raw))
                continue
            if not ok[k]:
                place = self._place(self.get(recs[k], m.lon), self.get(recs[k], m.lat))
                rejections.append(Rejection(number, place or "bad position", raw))
                continue
            key = (subject[k], t)
            if key in seen:
                rejections.append(Rejection(
                    number, f"duplicate of an earlier record of `{key[0]}` at {t.isoformat()}",
                    raw))
                continue
            seen.add(key)
            keep.append(k)

        def pick(values: list[Any] | None, factor: float = 1.0) -> list[Any]:
            if values is None:
                return []
            if factor != 1.0:
                return [None if values[k] is None else values[k] * factor for k in keep]
            return [values[k] for k in keep]

        out = Normalised(ObservationBatch(
            batch_id=batch_id, dataset=self.reg.name, version=self.version, owner=self.reg.owner,
            subject=pick(subject), ts=pick(ts), lon=lon[keep].tolist(), lat=lat[keep].tolist(),
            speed_kmh=pick(self._column(recs, m.speed), self.speed_factor),
            heading=pick(self._column(recs, m.heading)), value=pick(self._column(recs, m.value)),
            attrs=[self._attrs(recs[k]) for k in keep] if self.attr_fields else [],
        ), rejections)
        for f in self.optional_mapped:
            out.mapped_optional_total += len(keep)
            out.mapped_optional_present += sum(v is not None for v in pick(self._column(recs, f)))
        if keep:
            epochs = np.fromiter((t.timestamp() for t in out.batch.ts), dtype=np.float64)  # type: ignore[union-attr]
            lags = received_at.timestamp() - epochs
            out.lag_sum_s, out.lag_max_s = float(lags.sum()), float(lags.max())
            out.lag_count = len(keep)
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

    def _entities(self, batch_id: str, records: list[tuple[int, Any, Any]],
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

    def _media(self, batch_id: str, records: list[tuple[int, Any, Any]],
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
            out.add_lag((received_at - ts).total_seconds())
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
