"""Dataset registrations, batch outcomes, dead letters and data-contribution metrics (ingestion)."""

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

DatasetKind = Literal["entity", "observation", "media"]
FieldType = Literal["string", "integer", "number", "boolean", "datetime", "geometry"]
Slug = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{1,62}$", description="lower-case name")]


class FieldSpec(Struct, frozen=True, forbid_unknown_fields=True):
    """One column/property a department's records carry."""

    name: str
    type: FieldType
    required: bool = False
    unit: str | None = None  # unit of a number: m/s, km/h, knots, ... (normalised on ingest)
    description: str = ""


class FieldMapping(Struct, frozen=True, forbid_unknown_fields=True):
    """Which source fields fill the platform's model.

    observation: subject (e.g. plate), time, lon/lat (or geometry), optional speed/heading/value.
    entity: subject (entity id), name, category (enterprise, poi, ...), lon/lat or geometry,
    optional time (valid from). media: subject (camera id), time, lon/lat, uri, media_type.
    Every other schema field is kept as an attribute.
    """

    subject: str
    time: str | None = None
    lon: str | None = None
    lat: str | None = None
    geometry: str | None = None
    name: str | None = None
    category: str | None = None
    speed: str | None = None
    heading: str | None = None
    value: str | None = None
    uri: str | None = None
    media_type: str | None = None


class DatasetRegistration(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                          tag="cityos.dataset_registration.v1"):
    """What a department posts to register (or re-version) a dataset."""

    name: Slug
    title: str
    owner: str  # department code from the city's units.json
    kind: DatasetKind
    fields: list[FieldSpec]
    mapping: FieldMapping
    # Many government exports carry local times without an offset; a dataset may declare the
    # zone they are in. Without it, a time with no zone is rejected rather than guessed.
    assume_timezone: str | None = None
    description: str = ""


class DatasetVersion(Struct, frozen=True, tag_field="schema", tag="cityos.dataset_version.v1"):
    """A registered version of a dataset, as stored and as announced on NATS."""

    name: str
    version: int
    registration: DatasetRegistration
    registered_at: datetime


class BatchResult(Struct, frozen=True, tag_field="schema", tag="cityos.batch_result.v1"):
    """The answer to one pushed batch: received == accepted + rejected, always."""

    batch_id: str
    dataset: str
    version: int
    received: int
    accepted: int
    rejected: int
    duplicate: bool = False  # the same batch (idempotency key) was accepted before
    reasons: dict[str, int] = msgspec.field(default_factory=dict)  # rejection reason -> count


class DeadLetter(Struct, frozen=True, tag_field="schema", tag="cityos.dead_letter.v1"):
    """A rejected record, kept with the reason its owner can act on."""

    dataset: str
    version: int | None
    batch_id: str
    row: int  # position in the batch, 1-based like a spreadsheet line of data
    reason: str
    raw: str
    received_at: datetime


class ContributionMetrics(Struct, frozen=True, tag_field="schema",
                          tag="cityos.contribution_metrics.v1"):
    """How much, how fresh, how valid and how complete a department's data for one dataset is."""

    department: str
    dataset: str
    window_start: datetime
    window_end: datetime
    received: int
    accepted: int
    rejected: int
    validity_rate: float  # accepted / received
    completeness: float  # share of mapped optional fields present in accepted records
    freshness_mean_s: float | None  # lag from observation time to arrival
    freshness_max_s: float | None

