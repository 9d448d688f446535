"""Reports, cases and case events (the event hub), and the Open311 GeoReport v2 payloads.

A *report* is what one channel said about an incident; a *case* is the incident, listing every
report merged into it; a *case event* is one step of the case's life (who, when, why). The
case's history is the sequence of its events: `seq` 1, 2, 3… on `cases.events.<case_id>`.
Reporter contact is personal data: it travels in `ReportIn` only and is answered masked, except
to the unit handling the case (an audited read).
"""

from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec import Meta, Struct

Channel = Literal["hotline_12345", "police_110", "citizen_app", "wechat", "grid_app", "camera_ai",
                  "system"]
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)

CaseStatus = Literal[
    "received",    # taken in, not yet classified with confidence: waits for an operator
    "classified",  # category known (model, rule, channel or operator)
    "accepted",    # accepted by the command center
    "dispatched",  # sent to the unit that must act
    "handling",    # the unit is on it
    "handled",     # the unit reports it done
    "verified",    # checked on site (grid worker, camera, caller)
    "closed",
    "merged",      # a duplicate: its reports live in `merged_into`
    "returned",    # the unit sent it back (not theirs, cannot act): the center re-routes
    "rejected",    # not a city matter, spam, or no incident
    "reopened",    # closed/rejected too early: back to the center
]
CASE_STATUSES: Final[tuple[str, ...]] = get_args(CaseStatus)

EventKind = Literal[
    "received", "classified", "accepted", "dispatched", "started", "handled", "verified",
    "closed", "returned", "rejected", "reopened", "merged", "report_added", "reports_merged_in",
    "split", "split_from", "reworked",
    "escalated",  # a deadline was missed: escalated to the unit's parent and the command center
    "noted",  # progress, an extension, a staff assignment: recorded, the status unchanged
]
ClassifiedBy = Literal["model", "rule", "channel", "operator", "none"]
LocationSource = Literal["point", "gazetteer", "none"]

CategoryCode = Annotated[str, Meta(pattern=r"^\d{4}$", description="code from categories.json")]
Longitude = Annotated[float, Meta(ge=-180, le=180)]
Latitude = Annotated[float, Meta(ge=-90, le=90)]
Reason = Annotated[str, Meta(max_length=2000)]


class ReporterContact(Struct, frozen=True, forbid_unknown_fields=True):
    """Who to call back. Stored apart from the report; never answered unmasked except to the
    unit handling the case."""

    name: Annotated[str, Meta(max_length=100)] | None = None
    phone: Annotated[str, Meta(max_length=40)] | None = None
    email: Annotated[str, Meta(max_length=200)] | None = None
    account: Annotated[str, Meta(max_length=200)] | None = None  # app / WeChat / worker id


class ReportIn(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
               tag="cityos.report.v1"):
    """One report from one channel: POST /reports, or a message on `reports.<channel>`.

    At least one of lon/lat and address is required; `reported_at` is when the reporter made
    the report (merging goes by it) and must carry a time zone.
    """

    channel: Channel
    text: str
    reported_at: datetime
    lon: Longitude | None = None
    lat: Latitude | None = None
    address: Annotated[str, Meta(max_length=500)] | None = None
    reporter: ReporterContact | None = None
    media: Annotated[list[Annotated[str, Meta(max_length=2000)]], Meta(max_length=20)] = \
        msgspec.field(default_factory=list)  # photo / clip references (URIs)
    category: CategoryCode | None = None  # when the channel already knows it
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    source_ref: Annotated[str, Meta(max_length=200)] | None = None  # the channel's ticket no.


class CategoryScore(Struct, frozen=True):
    category: str
    probability: float


class Classification(Struct, frozen=True, tag_field="schema", tag="cityos.classification.v1"):
    """A category with a confidence, and how it was found (`rule` names the keyword rule)."""

    category: str | None
    confidence: float
    method: ClassifiedBy
    rule: str | None = None
    alternatives: list[CategoryScore] = msgspec.field(default_factory=list)
    note: str = ""  # e.g. "text is not Chinese"


class Location(Struct, frozen=True, tag_field="schema", tag="cityos.location.v1"):
    """Where: the point (given, or from the address gazetteer), its division and grid cell."""

    lon: float | None = None
    lat: float | None = None
    address: str | None = None
    district: str | None = None
    district_name: str | None = None
    street: str | None = None
    street_name: str | None = None
    grid: str | None = None
    source: LocationSource = "none"
    precision_m: float | None = None  # radius the point may be off by (gazetteer hits)


class MaskedContact(Struct, frozen=True):
    """A reporter contact as everyone but the handling unit sees it: 138****5678, 张*."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    account: str | None = None
    masked: bool = True


class Report(Struct, frozen=True, tag_field="schema", tag="cityos.report_view.v1"):
    report_id: int
    case_id: int
    channel: Channel
    text: str
    reported_at: datetime
    received_at: datetime
    location: Location
    classification: Classification
    media: list[str] = msgspec.field(default_factory=list)
    category_hint: str | None = None
    source_ref: str | None = None
    reporter: MaskedContact | None = None


class ReportReceipt(Struct, frozen=True, tag_field="schema", tag="cityos.report_receipt.v1"):
    """The answer to a report: its id, the case it belongs to, and what intake decided."""

    report_id: int
    case_id: int
    status: CaseStatus
    merged: bool  # joined an existing case
    duplicate: bool  # the same idempotency key was seen before: this is the first answer
    classification: Classification
    location: Location


class CaseEvent(Struct, frozen=True, tag_field="schema", tag="cityos.case_event.v1"):
    """One step of a case's life, published on `cases.events.<case_id>` (msg id
    `case:<case_id>:<seq>`). `seq` is the case's version after the event, so a reader can
    order, deduplicate and spot gaps."""

    event_id: str
    case_id: int
    seq: int
    kind: EventKind
    to_status: CaseStatus
    actor: str  # token subject, or `system:<component>`
    actor_unit: str
    at: datetime
    from_status: CaseStatus | None = None
    reason: str = ""
    report_id: int | None = None
    report_ids: list[int] = msgspec.field(default_factory=list)
    category: str | None = None
    confidence: float | None = None
    classified_by: ClassifiedBy | None = None
    unit: str | None = None  # the unit dispatched to / handling
    other_case_id: int | None = None  # merged into / merged from / split into or from
    location: Location | None = None


class Case(Struct, frozen=True, tag_field="schema", tag="cityos.case.v1"):
    case_id: int
    status: CaseStatus
    version: int
    title: str
    location: Location
    first_reported_at: datetime
    last_reported_at: datetime
    report_count: int
    channels: list[str]
    created_at: datetime
    updated_at: datetime
    needs_operator: bool  # no confident category (or no place): an operator must look
    category: str | None = None
    category_name: str | None = None
    confidence: float | None = None
    classified_by: ClassifiedBy | None = None
    department: str | None = None
    handling_unit: str | None = None  # who acts now; the command center until dispatched
    priority: str | None = None
    accept_due: datetime | None = None
    dispose_due: datetime | None = None
    closed_at: datetime | None = None
    merged_into: int | None = None


class CaseDetail(Struct, frozen=True, tag_field="schema", tag="cityos.case_detail.v1"):
    case: Case
    reports: list[Report]
    history: list[CaseEvent]


class CasePage(Struct, frozen=True, tag_field="schema", tag="cityos.case_page.v1"):
    items: list[Case]
    next_cursor: str | None = None  # pass as `cursor` for the next page


class CaseAction(Struct, frozen=True, forbid_unknown_fields=True):
    """The body of an operator or unit action on a case. `expected_version` makes the action
    conditional (409 if the case changed since the caller read it)."""

    reason: Reason = ""
    expected_version: int | None = None
    category: CategoryCode | None = None  # classify
    unit: Annotated[str, Meta(max_length=64)] | None = None  # dispatch (default: by category)
    into_case_id: int | None = None  # merge this case into that one
    report_ids: list[int] = msgspec.field(default_factory=list)  # split these reports out


class ReporterOfReport(Struct, frozen=True):
    report_id: int
    channel: Channel
    reported_at: datetime
    contact: ReporterContact


class ContactView(Struct, frozen=True, tag_field="schema", tag="cityos.reporter_contacts.v1"):
    """Unmasked reporter contacts of a case, for the unit handling it (every read is audited)."""

    case_id: int
    contacts: list[ReporterOfReport]


# -- Open311 GeoReport v2 (field names as the specification spells them) ----------------------


class Open311Service(Struct, frozen=True):
    service_code: str
    service_name: str
    description: str
    metadata: bool
    type: str
    keywords: str
    group: str


class Open311ServiceDefinition(Struct, frozen=True):
    service_code: str
    attributes: list[dict[str, Any]]


class Open311Created(Struct, frozen=True):
    service_request_id: str
    service_notice: str = ""
    account_id: str | None = None
    token: str | None = None


class Open311Request(Struct, frozen=True):
    service_request_id: str
    status: Literal["open", "closed"]
    service_code: str | None
    service_name: str | None
    description: str
    agency_responsible: str | None
    requested_datetime: datetime
    updated_datetime: datetime
    status_notes: str | None = None
    service_notice: str | None = None
    expected_datetime: datetime | None = None
    address: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None


class Open311Error(Struct, frozen=True):
    code: int
    description: str
