"""Normalised records on their way from ingestion to storage.

Observations travel as columnar batches: one NATS message carries up to a few thousand fixes,
because per-fix messages would cap the platform far below the GPS feeds of a city.
"""

from datetime import datetime
from typing import Any

import msgspec
from msgspec import Struct

Geometry = dict[str, Any]  # a GeoJSON geometry in WGS84 lon/lat (EPSG:4326)


class RawRecordBatch(Struct, frozen=True, tag_field="schema", tag="cityos.raw_record_batch.v1"):
    """Records a department publishes on NATS instead of pushing over HTTP."""

    dataset: str
    version: int
    records: list[dict[str, Any]]
    batch_id: str | None = None  # idempotency key; derived from the message id when absent


class ObservationBatch(Struct, frozen=True, tag_field="schema", tag="cityos.observation_batch.v1"):
    """Validated, normalised observations (GPS fixes, sensor readings) of one dataset.

    Columns are parallel lists of one length. Times are timezone-aware (UTC after normalising);
    speed is km/h, heading degrees clockwise from north.
    """

    batch_id: str
    dataset: str
    version: int
    owner: str
    subject: list[str]
    ts: list[datetime]
    lon: list[float]
    lat: list[float]
    speed_kmh: list[float | None] = msgspec.field(default_factory=list)
    heading: list[float | None] = msgspec.field(default_factory=list)
    value: list[float | None] = msgspec.field(default_factory=list)
    attrs: list[dict[str, Any] | None] = msgspec.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.subject)


class Entity(Struct, frozen=True):
    """One structured record with a place: an enterprise, a POI, a camera, a shelter..."""

    entity_id: str
    name: str | None
    category: str | None
    geometry: Geometry | None
    valid_from: datetime  # when this state of the entity began (history is kept)
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


class EntityBatch(Struct, frozen=True, tag_field="schema", tag="cityos.entity_batch.v1"):
    batch_id: str
    dataset: str
    version: int
    owner: str
    entities: list[Entity]


class MediaItem(Struct, frozen=True):
    """Metadata of an unstructured item kept elsewhere (a camera clip): where, when, what, link."""

    media_id: str
    subject: str  # the camera or device
    ts: datetime
    lon: float | None
    lat: float | None
    uri: str
    media_type: str | None = None
    attrs: dict[str, Any] = msgspec.field(default_factory=dict)


class MediaBatch(Struct, frozen=True, tag_field="schema", tag="cityos.media_batch.v1"):
    batch_id: str
    dataset: str
    version: int
    owner: str
    items: list[MediaItem]
