"""Every NATS subject and JetStream stream of the platform, in one place.

Subjects here are relative: the kit prefixes them with the deployment's namespace
(`cityos` by default, a per-run name in tests), so `obs.gps` travels as `cityos.obs.gps`.
`<dataset>` and `<owner>` are filled in per message; consumers subscribe with wildcards.
"""

from dataclasses import dataclass, field

from msgspec import Struct

from cityos_contracts.cases import CaseEvent, ReportIn
from cityos_contracts.datasets import ContributionMetrics, DatasetVersion, DeadLetter
from cityos_contracts.dispatch import DispatchEvent, Emergency, Feedback
from cityos_contracts.identity import AuditEvent, Revocation
from cityos_contracts.records import EntityBatch, MediaBatch, ObservationBatch, RawRecordBatch
from cityos_contracts.stquery import (
    BoxQuery,
    BoxSelection,
    NearestQuery,
    NearestResult,
    QueryError,
    ReachableArea,
    ReachableQuery,
)


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
    publishers=("department systems", "dispatch"), subscribers=("ingestion",))
OBSERVATIONS = Subject(
    "obs.<dataset>", ObservationBatch,
    "Validated, normalised observation batches (GPS fixes, sensor readings).",
    publishers=("ingestion",), subscribers=("spatiotemporal", "maps", "hazchem"))
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
REPORTS = Subject(
    "reports.<channel>", ReportIn,
    "Incident reports from a channel's system (hotline, 110, apps, cameras) or a service's "
    "automated warning (channel `system`); taken in by the event hub like POST /reports.",
    publishers=("department systems", ANY_SERVICE), subscribers=("events",))
CASE_EVENTS = Subject(
    "cases.events.<case_id>", CaseEvent,
    "Every step of a case's life, in order per case (`seq`); the case's history can be rebuilt "
    "from these.",
    publishers=("events",), subscribers=("events", "dispatch", "review", "maps",
                                         "spatiotemporal"))
DISPATCH_EVENTS = Subject(
    "dispatch.events.<case_id>", DispatchEvent,
    "Dispatch's decisions and deadlines of a case: routing (rule, lead and assisting units, "
    "deadlines), reminders, escalations, extensions, staff assignments, feedback and ratings.",
    publishers=("dispatch",), subscribers=("review",))
EMERGENCIES = Subject(
    "dispatch.emergencies.<emergency_id>", Emergency,
    "An emergency declared (wartime mode) or ended: its polygon, command unit and priority.",
    publishers=("dispatch",))
FEEDBACK = Subject(
    "feedback.<channel>", Feedback,
    "A closed case's feedback to one reporter, for the channel's adapter to deliver; the "
    "adapter returns the reporter's rating over HTTP.",
    publishers=("dispatch",), subscribers=("department systems",))

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
    Stream("REPORTS", (REPORTS,), "Incident reports awaiting intake", 7),
    # Kept as long as the cases: the stream is the history a reader can rebuild cases from.
    Stream("CASE_EVENTS", (CASE_EVENTS,), "Case lifecycle events", 3650),
    # As long as the cases: the review rebuilds its figures from this and CASE_EVENTS.
    Stream("DISPATCH", (DISPATCH_EVENTS, EMERGENCIES), "Dispatch decisions and deadlines", 3650),
    Stream("FEEDBACK", (FEEDBACK,), "Closure feedback awaiting the channels' adapters", 30),
)

ALL_SUBJECTS: tuple[Subject, ...] = tuple(s for st in STREAMS for s in st.subjects)


# -- request/reply (core NATS, no stream): queries a service answers at once -------------------


@dataclass(frozen=True)
class RequestSubject:
    """A subject a service answers with NATS request/reply (queue group: the responder's name).

    The reply is `reply` on success, else `error` (a QueryError: status and reason). Nothing is
    stored: a request nobody answers times out at the requester.
    """

    pattern: str
    request: type[Struct]
    reply: type[Struct]
    description: str
    responders: tuple[str, ...]
    requesters: tuple[str, ...] = ()
    error: type[Struct] = QueryError


NEAREST_QUERY = RequestSubject(
    "stquery.nearest", NearestQuery, NearestResult,
    "The k nearest mobile subjects (latest position) or static entities to a point.",
    responders=("spatiotemporal",), requesters=("dispatch", "events", "maps"))
BOX_QUERY = RequestSubject(
    "stquery.box", BoxQuery, BoxSelection,
    "Everything inside a polygon grouped by kind (wartime mode).",
    responders=("spatiotemporal",), requesters=("maps", "events", "dispatch"))
REACHABLE_QUERY = RequestSubject(
    "stquery.reachable", ReachableQuery, ReachableArea,
    "The area reachable on the road network within N minutes, and its boundary intersections.",
    responders=("spatiotemporal",), requesters=("dispatch", "events", "maps"))

REQUEST_SUBJECTS: tuple[RequestSubject, ...] = (NEAREST_QUERY, BOX_QUERY, REACHABLE_QUERY)


def streams_of(service: str) -> tuple[Stream, ...]:
    """The streams a service publishes to or consumes from (all it may declare on NATS).

    Consumers also publish dead letters, so their streams include DEAD_LETTERS.
    """
    def involves(names: tuple[str, ...]) -> bool:
        return service in names or ANY_SERVICE in names

    mine = {s.name for s in STREAMS for subject in s.subjects
            if involves(subject.publishers) or involves(subject.subscribers)}
    if any(involves(subject.subscribers) for subject in ALL_SUBJECTS):
        mine.add("DEAD_LETTERS")
    return tuple(s for s in STREAMS if s.name in mine)
