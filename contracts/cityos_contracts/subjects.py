"""Every NATS subject and JetStream stream of the platform, in one place.

Subjects here are relative: the kit prefixes them with the deployment's namespace
(`cityos` by default, a per-run name in tests), so `obs.gps` travels as `cityos.obs.gps`.
`<dataset>` and `<owner>` are filled in per message; consumers subscribe with wildcards.
"""

from dataclasses import dataclass, field

from msgspec import Struct

from cityos_contracts.datasets import ContributionMetrics, DatasetVersion, DeadLetter
from cityos_contracts.identity import AuditEvent, Revocation
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch, RawRecordBatch


@dataclass(frozen=True)
class Subject:
    pattern: str  # with <placeholders>
    message: type[Struct]
    description: str
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...] = ()

    def wildcard(self) -> str:
        """The pattern with every placeholder as `*` (a consumer's filter)."""
        return ".".join("*" if p.startswith("<") else p for p in self.pattern.split("."))

    def format(self, **values: str) -> str:
        parts = []
        for p in self.pattern.split("."):
            parts.append(values[p[1:-1]] if p.startswith("<") else p)
        return ".".join(parts)


@dataclass(frozen=True)
class Stream:
    name: str
    subjects: tuple[Subject, ...]
    description: str
    max_age_days: float
    # Every stream is file-backed; replicas come from the deployment (1 locally, 3 on Kubernetes).
    duplicate_window_s: float = 120.0
    tags: tuple[str, ...] = field(default=())


RAW_RECORDS = Subject(
    "ingest.raw.<dataset>", RawRecordBatch,
    "Raw records a department publishes instead of pushing over HTTP; validated by ingestion.",
    publishers=("department systems",), subscribers=("ingestion",))
OBSERVATIONS = Subject(
    "obs.<dataset>", ObservationBatch,
    "Validated, normalised observation batches (GPS fixes, sensor readings).",
    publishers=("ingestion",), subscribers=("spatiotemporal",))
ENTITIES = Subject(
    "entity.<dataset>", EntityBatch,
    "Validated structured records with places (enterprises, POIs, roads, cameras...).",
    publishers=("ingestion",), subscribers=("spatiotemporal",))
MEDIA = Subject(
    "media.<dataset>", MediaBatch,
    "Metadata and references of unstructured items (camera clips).",
    publishers=("ingestion",), subscribers=("spatiotemporal",))
DEAD_LETTERS = Subject(
    "deadletter.<dataset>", DeadLetter,
    "A record that was rejected, with the reason; also kept in ingestion's dead-letter store.",
    publishers=("ingestion", "spatiotemporal"), subscribers=("ingestion",))
CONTRIBUTION = Subject(
    "contribution.<owner>.<dataset>", ContributionMetrics,
    "Data-contribution metrics per department and dataset, for the efficiency review.",
    publishers=("ingestion",), subscribers=("review",))
DATASET_VERSIONS = Subject(
    "dataset.<dataset>", DatasetVersion,
    "A dataset registration or new version.",
    publishers=("ingestion",), subscribers=("spatiotemporal",))
# Publisher/subscriber meaning every CityOS service (NATS permissions grant it to each one).
ANY_SERVICE = "any service"
AUDIT_EVENTS = Subject(
    "audit.<service>", AuditEvent,
    "Audit log entries (state-changing calls, personal-data reads); kept by identity.",
    publishers=(ANY_SERVICE,), subscribers=("identity",))
REVOCATIONS = Subject(
    "identity.revoked", Revocation,
    "A revoked client, person or token: every service's verifier rejects it at once.",
    publishers=("identity",), subscribers=(ANY_SERVICE,))

STREAMS: tuple[Stream, ...] = (
    Stream("INGEST_RAW", (RAW_RECORDS,), "Raw department batches awaiting validation", 3),
    Stream("OBSERVATIONS", (OBSERVATIONS,), "Normalised observations", 7),
    Stream("ENTITIES", (ENTITIES, MEDIA, DATASET_VERSIONS),
           "Entities, media metadata and dataset versions", 30),
    Stream("DEAD_LETTERS", (DEAD_LETTERS,), "Rejected records with reasons", 30),
    Stream("CONTRIBUTION", (CONTRIBUTION,), "Data-contribution metrics", 30),
    Stream("AUDIT", (AUDIT_EVENTS,), "Audit events on their way to the audit log", 7),
    # Longer than any token lives: a verifier starting late replays what is still relevant.
    Stream("REVOCATIONS", (REVOCATIONS,), "Revoked clients, people and tokens", 2),
)

ALL_SUBJECTS: tuple[Subject, ...] = tuple(s for st in STREAMS for s in st.subjects)
