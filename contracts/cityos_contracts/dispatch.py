"""Dispatch: routing rules, unit assignments with deadlines, unit and field-staff actions,
closure feedback, and wartime emergencies.

The event hub owns a case's status; dispatch owns *who* must act and *by when*. Everything
dispatch decides is a `DispatchEvent` on `dispatch.events.<case_id>` (stream DISPATCH), so the
efficiency review can rebuild its figures from the two streams. A round of handling is named by
`round_seq`: the case-event `seq` of the hub's `dispatched` event that started it.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from cityos_contracts.stquery import BoxSelection

Priority = Literal["low", "normal", "high", "urgent"]
Level = Literal["city", "district", "street"]
DeadlineKind = Literal["accept", "dispose"]
UnitRef = Annotated[str, Meta(min_length=1, max_length=64,
                              description="a unit id, or a department code resolved by level")]
Text = Annotated[str, Meta(max_length=2000)]
Uri = Annotated[str, Meta(min_length=1, max_length=2000)]
Hour = Annotated[int, Meta(ge=0, le=24)]
Lon = Annotated[float, Meta(ge=-180, le=180)]
Lat = Annotated[float, Meta(ge=-90, le=90)]

DispatchEventKind = Literal[
    "routed",               # a unit was dispatched: lead, assisting, rule, priority, deadlines
    "reminded",             # a deadline is near
    "escalated",            # a deadline was missed: escalated to the parent unit and CMD
    "extension_requested",  # the unit asks for more time to dispose
    "extension_granted",
    "extension_refused",
    "progress",             # the unit reports progress
    "evidence",             # the unit reports it handled, with evidence references
    "staff_assigned",       # a person of the unit takes the case
    "priority_raised",      # an emergency covers the case
    "feedback_sent",        # the reporter was told the case is closed
    "rated",                # the reporter's satisfaction
    "reopen_requested",     # an unsatisfied reporter reopened within the window
]


# -- routing rules -------------------------------------------------------------------------------


class RuleIn(Struct, frozen=True, forbid_unknown_fields=True):
    """A routing rule: which cases it matches, and who handles them.

    Matching: every given condition must hold (category, district, street, local hour in
    [from_hour, to_hour), wrapping over midnight). The matching rule with the highest `order`
    wins, then the more specific one (street > district > hours > category), then the older.
    `lead` and `assisting` are unit ids, or department codes when `level` is given: a department
    is resolved to its city unit, its branch in the case's district, or the case's street office
    (categories.json's notes). Assisting units are joint handlers (联合处置); an assisting
    department of a street-level rule joins with its district branch (or city unit).
    """

    lead: UnitRef
    level: Level | None = None
    category: Annotated[str, Meta(pattern=r"^\d{4}$")] | None = None
    district: Annotated[str, Meta(pattern=r"^\d{6}$")] | None = None
    street: Annotated[str, Meta(pattern=r"^\d{9}$")] | None = None
    from_hour: Hour | None = None
    to_hour: Hour | None = None
    assisting: Annotated[list[UnitRef], Meta(max_length=10)] = msgspec.field(
        default_factory=list)
    order: Annotated[int, Meta(ge=-1000, le=1000)] = 0
    enabled: bool = True
    description: Text = ""


class Rule(Struct, frozen=True, tag_field="schema", tag="cityos.dispatch_rule.v1"):
    rule_id: int
    version: int
    rule: RuleIn
    updated_at: datetime
    updated_by: str


class RouteDecision(Struct, frozen=True, tag_field="schema", tag="cityos.route_decision.v1"):
    """Which units a case goes to and why (`GET /route` and `POST /rules/preview` preview it,
    nothing is stored). `level` is the lead unit's (city department, district branch, street
    office)."""

    lead: str
    assisting: list[str]
    priority: Priority
    rule_id: int | None = None
    rule_version: int | None = None
    emergency_id: int | None = None
    reason: str = ""
    level: Level | None = None


class PreviewCase(Struct, frozen=True, forbid_unknown_fields=True):
    """What routing looks at in a case: its category, place and time. A street alone implies
    its district."""

    at: Annotated[datetime, Meta(tz=True, description="when it is reported, with a time zone")]
    category: Annotated[str, Meta(pattern=r"^\d{4}$")] | None = None
    district: Annotated[str, Meta(pattern=r"^\d{6}$")] | None = None
    street: Annotated[str, Meta(pattern=r"^\d{9}$")] | None = None


class RulePreviewIn(Struct, frozen=True, forbid_unknown_fields=True):
    """A dry run of routing (`POST /rules/preview`): where `case` goes with the rules in force,
    and with `rule` added; with `rule_id` too, that rule replaced by `rule`; `rule_id` alone,
    that rule removed."""

    case: PreviewCase
    rule: RuleIn | None = None
    rule_id: Annotated[int, Meta(ge=1, le=2**63 - 1)] | None = None


class RulePreview(Struct, frozen=True, tag_field="schema", tag="cityos.rule_preview.v1"):
    """`current`: the rules in force; `with_rule`: after the edit (null without one). A draft
    rule that is not saved yet chooses with `rule_id` null; no rule matching means the command
    center routes the case by hand (`lead` CMD, `rule_id` null)."""

    current: RouteDecision
    with_rule: RouteDecision | None = None


# -- assignments and unit actions -----------------------------------------------------------------


class Assignment(Struct, frozen=True, tag_field="schema", tag="cityos.assignment.v1"):
    """A case as dispatch sees it: who handles it, by when, in which state."""

    case_id: int
    round_seq: int
    lead: str
    assisting: list[str]
    priority: Priority
    state: Literal["dispatched", "accepted", "handled", "returned", "closed", "ended"]
    dispatched_at: datetime
    accept_due: datetime
    dispose_due: datetime
    category: str | None = None
    title: str = ""
    lon: float | None = None
    lat: float | None = None
    district: str | None = None
    street: str | None = None
    rule_id: int | None = None
    rule_version: int | None = None
    emergency_id: int | None = None
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    staff_id: str | None = None
    escalations: int = 0
    extension_pending_h: float | None = None
    evidence: list[str] = msgspec.field(default_factory=list)


class UnitAction(Struct, frozen=True, forbid_unknown_fields=True):
    """The body of a unit's action on a case it handles (accept, return, progress, handled,
    extension). `reason` is required to return, to report progress and to ask for time."""

    reason: Text = ""
    evidence: Annotated[list[Uri], Meta(max_length=20)] = msgspec.field(default_factory=list)
    hours: Annotated[float, Meta(gt=0, le=720)] | None = None  # extension asked for
    expected_version: int | None = None


class ExtensionDecision(Struct, frozen=True, forbid_unknown_fields=True):
    approve: bool
    hours: Annotated[float, Meta(gt=0, le=720)] | None = None  # default: what was asked
    reason: Text = ""


class DispatchEvent(Struct, frozen=True, tag_field="schema", tag="cityos.dispatch_event.v1"):
    """One decision or deadline event of dispatch, on `dispatch.events.<case_id>` (msg id
    `dispatch:<event_id>`)."""

    event_id: str
    case_id: int
    kind: DispatchEventKind
    at: datetime
    actor: str  # token subject, or `system:dispatch`
    unit: str | None = None  # the unit concerned (the lead, or who acted)
    round_seq: int | None = None
    reason: str = ""
    lead: str | None = None
    assisting: list[str] = msgspec.field(default_factory=list)
    rule_id: int | None = None
    rule_version: int | None = None
    emergency_id: int | None = None
    priority: Priority | None = None
    accept_due: datetime | None = None
    dispose_due: datetime | None = None
    deadline: DeadlineKind | None = None  # reminded / escalated
    due: datetime | None = None
    escalated_to: list[str] = msgspec.field(default_factory=list)
    hours: float | None = None  # extensions
    evidence: list[str] = msgspec.field(default_factory=list)
    staff_id: str | None = None
    distance_m: float | None = None
    score: int | None = None  # rated: 1 (very unsatisfied) .. 5 (very satisfied)
    channel: str | None = None


class Escalation(Struct, frozen=True, tag_field="schema", tag="cityos.escalation.v1"):
    case_id: int
    round_seq: int
    unit: str
    deadline: DeadlineKind
    due: datetime
    escalated_at: datetime
    escalated_to: list[str]


# -- field staff -----------------------------------------------------------------------------------


class DutyChange(Struct, frozen=True, forbid_unknown_fields=True):
    on_duty: bool
    lon: Lon | None = None
    lat: Lat | None = None
    name: Annotated[str, Meta(max_length=100)] | None = None


class PositionReport(Struct, frozen=True, forbid_unknown_fields=True):
    lon: Lon
    lat: Lat
    at: datetime | None = None  # default: now; needs a time zone
    speed_kmh: Annotated[float, Meta(ge=0, le=300)] | None = None


class StaffPosition(Struct, frozen=True, forbid_unknown_fields=True):
    staff_id: Annotated[str, Meta(min_length=1, max_length=200)]
    lon: Lon
    lat: Lat
    at: datetime | None = None
    speed_kmh: Annotated[float, Meta(ge=0, le=300)] | None = None


class PositionBatch(Struct, frozen=True, forbid_unknown_fields=True):
    """A unit's device gateway reports many of its people's positions in one request."""

    positions: Annotated[list[StaffPosition], Meta(min_length=1, max_length=5000)]


class StaffMember(Struct, frozen=True, tag_field="schema", tag="cityos.staff.v1"):
    staff_id: str
    unit: str
    on_duty: bool
    name: str | None = None
    lon: float | None = None
    lat: float | None = None
    position_at: datetime | None = None
    open_tasks: int = 0


class AssignStaff(Struct, frozen=True, forbid_unknown_fields=True):
    """Give a case to a person of the unit; without `staff_id`, to the nearest on-duty one
    (the spatio-temporal service's nearest query on the staff positions)."""

    staff_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    max_distance_m: Annotated[float, Meta(gt=0, le=50_000)] | None = None
    reason: Text = ""


class Task(Struct, frozen=True, tag_field="schema", tag="cityos.staff_task.v1"):
    """A person's task: a case to handle, or an emergency order."""

    task_id: int
    staff_id: str
    unit: str
    state: Literal["open", "done", "cancelled"]
    assigned_at: datetime
    case_id: int | None = None
    emergency_id: int | None = None
    text: str = ""
    lon: float | None = None
    lat: float | None = None
    distance_m: float | None = None
    accept_due: datetime | None = None
    dispose_due: datetime | None = None


class StreetReport(Struct, frozen=True, forbid_unknown_fields=True):
    """An incident a field worker finds on the street (街道吹哨): goes to the event hub on
    `reports.grid_app` with the worker as the reporter."""

    text: Annotated[str, Meta(min_length=1, max_length=4000)]
    lon: Lon
    lat: Lat
    reported_at: datetime | None = None
    category: Annotated[str, Meta(pattern=r"^\d{4}$")] | None = None
    media: Annotated[list[Uri], Meta(max_length=20)] = msgspec.field(default_factory=list)


class StreetReportReceipt(Struct, frozen=True, tag_field="schema",
                          tag="cityos.street_report_receipt.v1"):
    idempotency_key: str
    subject: str  # where it was published (relative)


# -- closure feedback ------------------------------------------------------------------------------


class Feedback(Struct, frozen=True, tag_field="schema", tag="cityos.feedback.v1"):
    """Tell a reporter their case is closed, on `feedback.<channel>` for the channel's adapter
    (12345 hotline call-back, app push, WeChat message). The adapter returns the reporter's
    satisfaction with `token` to `POST /feedback/{case_id}/rating` before `reopen_until`."""

    case_id: int
    report_id: int
    channel: str
    text: str
    closed_at: datetime
    token: str
    reopen_until: datetime
    source_ref: str | None = None  # the channel's own ticket number


class Rating(Struct, frozen=True, forbid_unknown_fields=True):
    token: Annotated[str, Meta(min_length=1, max_length=200)]
    score: Annotated[int, Meta(ge=1, le=5)]
    comment: Text = ""
    reopen: bool = False  # not satisfied: reopen the case (within the window)


class RatingReceipt(Struct, frozen=True, tag_field="schema", tag="cityos.rating_receipt.v1"):
    case_id: int
    score: int
    reopened: bool


class FeedbackRecord(Struct, frozen=True, tag_field="schema", tag="cityos.feedback_record.v1"):
    """A feedback sent to one reporter of a closed case, and their rating once it came back
    (`GET /feedback`: per case, per unit). The token stays with the channel's adapter."""

    case_id: int
    report_id: int
    closed_seq: int  # the closure it follows (a reopened case closes again: another one)
    channel: str
    text: str  # the message the reporter was sent
    sent_at: datetime
    reopen_until: datetime
    unit: str | None = None  # the lead unit of the closed round: whose work is rated
    round_seq: int | None = None
    source_ref: str | None = None
    score: int | None = None  # 1-5, None until the reporter rated
    comment: str = ""
    rated_at: datetime | None = None
    reopened: bool = False  # the rating reopened the case


# -- wartime mode ----------------------------------------------------------------------------------


class EmergencyIn(Struct, frozen=True, forbid_unknown_fields=True):
    """Declare an emergency (战时模式) over a polygon: cases inside get `priority` and go to
    `lead` (the emergency command) with `assisting` units."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    polygon: dict[str, Any]  # GeoJSON Polygon or MultiPolygon, WGS84
    lead: UnitRef = "YJJ"
    assisting: Annotated[list[UnitRef], Meta(max_length=20)] = msgspec.field(
        default_factory=list)
    priority: Priority = "urgent"


class Emergency(Struct, frozen=True, tag_field="schema", tag="cityos.emergency.v1"):
    """An emergency, as stored and as announced on `dispatch.emergencies.<emergency_id>`."""

    emergency_id: int
    name: str
    polygon: dict[str, Any]
    lead: str
    assisting: list[str]
    priority: Priority
    declared_at: datetime
    declared_by: str
    ended_at: datetime | None = None
    cases_raised: int = 0


class EmergencyResources(Struct, frozen=True, tag_field="schema",
                         tag="cityos.emergency_resources.v1"):
    """Everything inside an emergency's polygon: the spatio-temporal box selection, the open
    cases and the on-duty field staff."""

    emergency_id: int
    selection: BoxSelection | None
    cases: list[Assignment]
    staff: list[StaffMember]
    selection_error: str | None = None


class EmergencyTask(Struct, frozen=True, forbid_unknown_fields=True):
    staff_ids: Annotated[list[Annotated[str, Meta(min_length=1, max_length=200)]],
                         Meta(min_length=1, max_length=500)]
    text: Annotated[str, Meta(min_length=1, max_length=2000)]
    case_id: int | None = None
