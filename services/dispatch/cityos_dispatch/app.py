"""Dispatch's HTTP API: routing rules, assignments and units' actions (the middle screen),
field staff (the small screen), closure ratings, and wartime emergencies."""

import gc
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import httpx
from litestar import Litestar, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from cityos_contracts.cases import ReporterContact, ReportIn
from cityos_contracts.dispatch import (
    Assignment,
    AssignStaff,
    DutyChange,
    Emergency,
    EmergencyIn,
    EmergencyResources,
    EmergencyTask,
    Escalation,
    ExtensionDecision,
    FeedbackRecord,
    PositionBatch,
    PositionReport,
    Rating,
    RatingReceipt,
    RouteDecision,
    Rule,
    RuleIn,
    RulePreview,
    RulePreviewIn,
    StaffMember,
    StreetReport,
    StreetReportReceipt,
    Task,
    UnitAction,
)
from cityos_contracts.identity import Principal
from cityos_contracts.subjects import REPORTS
from cityos_dispatch import emergency, feedback, staff
from cityos_dispatch.config import DispatchSettings
from cityos_dispatch.dispatcher import Dispatcher, Forbidden
from cityos_dispatch.hub import EventHub, HubRefused, HubUnavailable
from cityos_dispatch.journal import Journal
from cityos_dispatch.rules import CityUnits, RuleError, preview, seed
from cityos_dispatch.staff import Position, Positions, QueryFailed
from cityos_dispatch.store import Conflict, DispatchStore, NotFound
from cityos_dispatch.worker import POOL_OPTIONS, Worker
from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, AuthSettings, current_principal, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.client_auth import ClientCredentials
from cityos_kit.config import Settings

SCHEMA = "dispatch"
MIGRATIONS = Path(__file__).parent / "migrations"
UNIT_ACTIONS = ("accept", "return", "progress", "handled", "extension")
HUB_KEEPALIVE_S = 4.0
T = TypeVar("T")
# Ids are Postgres bigints: a larger number is a 400, not a database error.
Id = Annotated[int, Parameter(ge=1, le=2**63 - 1)]


class Unprocessable(ClientException):
    status_code = 422


class ConflictError(ClientException):
    status_code = 409


def _d(state: State) -> Dispatcher:
    dispatcher: Dispatcher = state.dispatcher
    return dispatcher


async def _answer(call: Callable[[], Awaitable[T]]) -> T:
    """Run a dispatch step, mapping its refusals to HTTP answers."""
    try:
        return await call()
    except NotFound as exc:
        raise NotFoundException(detail=str(exc)) from exc
    except Forbidden as exc:
        raise PermissionDeniedException(detail=str(exc)) from exc
    except Conflict as exc:
        raise ConflictError(detail=str(exc)) from exc
    except RuleError as exc:
        raise Unprocessable(detail=str(exc)) from exc
    except HubRefused as exc:  # the hub's own reason, with its status
        raise HTTPException(status_code=exc.status, detail=f"event hub: {exc.detail}") from exc
    except HubUnavailable as exc:
        raise ServiceUnavailableException(detail=str(exc)) from exc
    except QueryFailed as exc:
        raise HTTPException(status_code=exc.status if exc.status < 500 else 503,
                            detail=f"spatio-temporal service: {exc.detail}") from exc


def _rules_edited(state: State) -> None:
    _d(state).forget_rules()
    worker: Worker = state.worker
    worker.forget_rules()


def _token(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("authorization", "").partition(" ")[2].strip()


async def _visible(request: Request[Any, Any, Any], state: State, case_id: Id) -> Assignment:
    a = await _d(state).store.current(_d(state).pool, case_id)
    if a is None:
        raise NotFoundException(detail=f"case {case_id} has not been dispatched")
    p = current_principal(request)
    if not (p.can_see_unit(a.lead) or p.unit in a.assisting or
            (a.staff_id is not None and a.staff_id == p.sub)):
        raise PermissionDeniedException(detail=f"case {case_id} is handled by {a.lead}; unit "
                                               f"{p.unit} may not see it")
    return a


# -- routing rules --------------------------------------------------------------------------------


@get("/rules", tags=["rules"], opt=scope("cases:read"))
async def list_rules(state: State) -> list[Rule]:
    """The routing rules in force (highest `order` first wins, then the most specific)."""
    return await _d(state).store.rules()


@post("/rules", status_code=HTTP_201_CREATED, tags=["rules"], opt=scope("dispatch:rules"))
async def add_rule(data: RuleIn, state: State, request: Request[Any, Any, Any]) -> Rule:
    """A new rule, version 1."""
    d = _d(state)
    await _answer(_sync(lambda: d.units.check(data)))
    (rule,) = await d.store.add_rules([data], current_principal(request).sub)
    _rules_edited(state)
    return rule


@get("/rules/{rule_id:int}", tags=["rules"], opt=scope("cases:read"))
async def get_rule(rule_id: Id, state: State,
                   version: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)] = None) -> Rule:
    """A rule as it is, or as it was at `version` (what an old dispatch was chosen by)."""
    rule = await _d(state).store.rule(rule_id, version)
    if rule is None:
        raise NotFoundException(detail=f"no rule {rule_id}" + (f" v{version}" if version else ""))
    return rule


@get("/rules/{rule_id:int}/versions", tags=["rules"], opt=scope("cases:read"))
async def rule_versions(rule_id: Id, state: State) -> list[Rule]:
    versions = await _d(state).store.rule_history(rule_id)
    if not versions:
        raise NotFoundException(detail=f"no rule {rule_id}")
    return versions


@put("/rules/{rule_id:int}", tags=["rules"], opt=scope("dispatch:rules"))
async def update_rule(rule_id: Id, data: RuleIn, state: State, request: Request[Any, Any, Any],
                      expected_version: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)]
                      = None) -> Rule:
    """A new version of the rule (409 if it is not at `expected_version`)."""
    d = _d(state)
    await _answer(_sync(lambda: d.units.check(data)))
    rule = await _answer(lambda: d.store.update_rule(rule_id, data,
                                                     current_principal(request).sub,
                                                     expected_version))
    _rules_edited(state)
    return rule


@delete("/rules/{rule_id:int}", status_code=HTTP_200_OK, tags=["rules"],
        opt=scope("dispatch:rules"))
async def delete_rule(rule_id: Id, state: State, request: Request[Any, Any, Any]) -> Rule:
    """Retire a rule: a last version marked deleted (old dispatches still name it)."""
    d = _d(state)
    rule = await _answer(lambda: d.store.update_rule(rule_id, None,
                                                     current_principal(request).sub, None))
    _rules_edited(state)
    return rule


@get("/route/{case_id:int}", tags=["rules"], opt=scope("cases:read"))
async def preview_route(case_id: Id, state: State) -> RouteDecision:
    """Where the rules (or an emergency) would send this case now; nothing is stored."""
    d = _d(state)
    case = await d.store.case(case_id)
    if case is None:
        raise NotFoundException(detail=f"dispatch has not seen case {case_id}")
    return await _answer(lambda: d.decide(d.pool, case, datetime.now(UTC)))


@post("/rules/preview", status_code=HTTP_200_OK, tags=["rules"], opt=scope("cases:dispatch"))
async def preview_rule(data: RulePreviewIn, state: State) -> RulePreview:
    """A dry run before saving a rule: where a case of this category, place and time goes with
    the rules in force (`current`) and with `rule` added, or replacing `rule_id`, or with
    `rule_id` removed (`with_rule`). The dispatcher's own routing function; nothing is stored."""
    d = _d(state)
    rules = await d.store.rules()  # not the cached ones: a rule saved a moment ago counts
    if data.rule_id is not None and all(r.rule_id != data.rule_id for r in rules):
        raise NotFoundException(detail=f"no rule {data.rule_id} in force")
    return await _answer(_sync(lambda: preview(d.units, rules, data, d.tz)))


def _sync(call: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A plain call as a step `_answer` runs (its refusals mapped alike)."""
    async def run() -> T:
        return call()
    return run


# -- assignments and units' actions ---------------------------------------------------------------


@get("/assignments", tags=["assignments"], opt=scope("cases:read"))
async def list_assignments(
    state: State, request: Request[Any, Any, Any],
    unit: Annotated[str | None, Parameter(max_length=64)] = None,
    state_: Annotated[list[str] | None, Parameter(query="state")] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> list[Assignment]:
    """Current assignments, newest first: of a unit (lead or assisting); a unit sees its own
    (a department's city unit, its branches' too), the command center every unit's."""
    p = current_principal(request)
    allowed = {"dispatched", "accepted", "handled", "returned", "closed", "ended"}
    if state_ and not set(state_) <= allowed:
        raise ClientException(detail=f"state is one of {sorted(allowed)}")
    department = None
    if not p.sees_all_units():
        if unit is not None and not p.can_see_unit(unit):
            raise PermissionDeniedException(detail=f"unit {p.unit} may not see unit {unit}")
        if unit is None:
            unit, department = (None, p.department) if p.unit == p.department else (p.unit, None)
    return await _d(state).store.assignments(unit, department, state_ or (), limit)


@get("/assignments/{case_id:int}", tags=["assignments"], opt=scope("cases:read"))
async def get_assignment(case_id: Id, state: State,
                         request: Request[Any, Any, Any]) -> Assignment:
    """Who handles the case (lead and assisting), by which rule, and by when."""
    return await _visible(request, state, case_id)


def _unit_action_route(action: str, summary: str) -> HTTPRouteHandler:
    async def act(case_id: Id, data: UnitAction, state: State,
                  request: Request[Any, Any, Any]) -> Assignment:
        d = _d(state)
        return await _answer(lambda: d.unit_action(case_id, action, data,
                                                   current_principal(request), _token(request)))

    act.__name__ = f"unit_{action}"
    act.__doc__ = summary
    return post(f"/assignments/{{case_id:int}}/{action}", tags=["unit actions"],
                opt=scope("cases:act"), status_code=HTTP_200_OK, name=f"unit_{action}")(act)


UNIT_ACTION_ROUTES = [
    _unit_action_route("accept", "The lead unit accepts the case (签收): the acceptance "
                       "deadline is met."),
    _unit_action_route("return", "The lead unit returns the case (wrong unit, cannot act; "
                       "reason required): the command center re-routes it."),
    _unit_action_route("progress", "Report progress (reason required); assisting units too."),
    _unit_action_route("handled", "Report the case handled, with evidence references (photo "
                       "URIs): the disposal deadline is met."),
    _unit_action_route("extension", "Ask for more time to dispose (`hours`, reason required); "
                       "the command center decides."),
]


@post("/assignments/{case_id:int}/extension/decision", tags=["unit actions"],
      opt=scope("cases:dispatch"), status_code=HTTP_200_OK)
async def decide_extension(case_id: Id, data: ExtensionDecision, state: State,
                           request: Request[Any, Any, Any]) -> Assignment:
    """The command center grants (the disposal deadline moves) or refuses an extension."""
    d = _d(state)
    return await _answer(lambda: d.decide_extension(case_id, data, current_principal(request)))


@post("/assignments/{case_id:int}/assign", tags=["unit actions"], opt=scope("cases:act"),
      status_code=HTTP_201_CREATED)
async def assign_staff(case_id: Id, data: AssignStaff, state: State,
                       request: Request[Any, Any, Any]) -> Task:
    """Give the case to a person of the lead unit, or to its nearest on-duty person."""
    d = _d(state)
    return await _answer(lambda: staff.assign(d, case_id, data, current_principal(request)))


@get("/escalations", tags=["assignments"], opt=scope("cases:read"))
async def list_escalations(
    state: State, request: Request[Any, Any, Any],
    unit: Annotated[str | None, Parameter(max_length=64, description="the late unit")] = None,
    to: Annotated[str | None, Parameter(max_length=64, description="escalated to")] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> list[Escalation]:
    """Missed deadlines: of a unit, or escalated to a unit (a parent, the command center)."""
    p = current_principal(request)
    if not p.sees_all_units():
        if unit is None and to is None:
            to = p.unit
        for u in (unit, to):
            if u is not None and not p.can_see_unit(u):
                raise PermissionDeniedException(detail=f"unit {p.unit} may not see unit {u}")
    return await _d(state).store.escalations(unit, to, limit)


# -- field staff ---------------------------------------------------------------------------------


def _position(p: Principal, staff_id: str, data: PositionReport, on_duty: bool) -> Position:
    at = data.at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ClientException(detail="at needs a time zone")
    return Position(staff_id, p.unit, data.lon, data.lat, at.astimezone(UTC), on_duty,
                    data.speed_kmh)


class Roster:
    """Who works for which unit and is on duty, as position reports need it: everyone read
    from the database in one query at most every TTL_S (other replicas' duty changes show up
    within it), not a read per report of a thousand people every few seconds."""

    TTL_S = 10.0

    def __init__(self, store: DispatchStore) -> None:
        self.store = store
        self._known: dict[str, tuple[str, bool]] = {}
        self._changed: dict[str, tuple[str, bool]] = {}  # here, while the roster was read
        self._read_at = -self.TTL_S

    def set(self, member: StaffMember) -> None:
        self._known[member.staff_id] = self._changed[member.staff_id] = (
            member.unit, member.on_duty)

    async def get(self, staff_id: str) -> tuple[str, bool] | None:
        if time.monotonic() - self._read_at > self.TTL_S:
            self._read_at = time.monotonic()  # (before the read: one reader at a time)
            self._changed = {}
            known = await self.store.roster()
            self._known = known | self._changed
        found = self._known.get(staff_id)
        if found is None:  # on duty since the last read, on another replica
            member = await self.store.staff(staff_id)
            if member is None:
                return None
            self.set(member)
            return member.unit, member.on_duty
        return found


async def _duty(state: State, p: Principal, staff_id: str, data: DutyChange) -> StaffMember:
    d = _d(state)
    member = await d.store.set_duty(staff_id, p.unit, data.on_duty, data.name or p.name or None,
                                    data.lon, data.lat)
    roster: Roster = state.roster
    roster.set(member)
    if member.lon is not None and member.lat is not None:
        # The engine's latest position carries on_duty: the nearest query sees the change.
        positions: Positions = state.positions
        positions.add(Position(staff_id, p.unit, member.lon, member.lat, datetime.now(UTC),
                               data.on_duty))
    return member


@post("/staff/me/duty", tags=["field staff"], opt=scope("staff:report"),
      status_code=HTTP_200_OK)
async def my_duty(data: DutyChange, state: State, request: Request[Any, Any, Any]
                  ) -> StaffMember:
    """Go on or off duty (with the current position, if known)."""
    p = current_principal(request)
    return await _duty(state, p, p.sub, data)


async def _report_position(state: State, p: Principal, staff_id: str,
                           data: PositionReport) -> Response[dict[str, Any]]:
    roster: Roster = state.roster
    member = await roster.get(staff_id)
    if member is None:
        raise NotFoundException(detail=f"field staff {staff_id!r} has never gone on duty")
    unit, on_duty = member
    if unit != p.unit:
        raise PermissionDeniedException(detail=f"{staff_id} works for {unit}, not {p.unit}")
    positions: Positions = state.positions
    positions.add(_position(p, staff_id, data, on_duty))
    return Response({"accepted": 1}, status_code=HTTP_202_ACCEPTED)


# Positions are telemetry (a thousand people every few seconds), not decisions: not in the
# audit log, like ingestion's GPS fixes; going on and off duty is.
POSITION = {**scope("staff:report"), "audit": False}


@post("/staff/me/position", tags=["field staff"], opt=POSITION, status_code=HTTP_202_ACCEPTED)
async def my_position(data: PositionReport, state: State, request: Request[Any, Any, Any]
                      ) -> Response[dict[str, Any]]:
    """Report where I am (every few seconds while on duty); written within a second."""
    p = current_principal(request)
    return await _report_position(state, p, p.sub, data)


@post("/staff/{staff_id:str}/duty", tags=["field staff"], opt=scope("staff:report"),
      status_code=HTTP_200_OK)
async def staff_duty(staff_id: str, data: DutyChange, state: State,
                     request: Request[Any, Any, Any]) -> StaffMember:
    """A unit's device gateway sets one of its people on or off duty."""
    p = current_principal(request)
    if not 0 < len(staff_id) <= 200:
        raise ClientException(detail="staff_id is 1 to 200 characters")
    member = await _d(state).store.staff(staff_id)
    if member is not None and member.unit != p.unit:
        raise PermissionDeniedException(detail=f"{staff_id} works for {member.unit}, not "
                                               f"{p.unit}")
    return await _duty(state, p, staff_id, data)


@post("/staff/{staff_id:str}/position", tags=["field staff"], opt=POSITION,
      status_code=HTTP_202_ACCEPTED)
async def staff_position(staff_id: str, data: PositionReport, state: State,
                         request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """A unit's device gateway reports where one of its people is."""
    return await _report_position(state, current_principal(request), staff_id, data)


@post("/staff/positions", tags=["field staff"], opt=POSITION, status_code=HTTP_202_ACCEPTED)
async def staff_positions(data: PositionBatch, state: State,
                          request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """A unit's device gateway reports many of its people's positions at once; all or none
    (every person must be of the caller's unit and have gone on duty)."""
    p = current_principal(request)
    roster: Roster = state.roster
    found = []
    for item in data.positions:
        member = await roster.get(item.staff_id)
        if member is None:
            raise NotFoundException(detail=f"field staff {item.staff_id!r} has never gone "
                                           "on duty")
        if member[0] != p.unit:
            raise PermissionDeniedException(detail=f"{item.staff_id} works for {member[0]}, "
                                                   f"not {p.unit}")
        report = PositionReport(lon=item.lon, lat=item.lat, at=item.at,
                                speed_kmh=item.speed_kmh)
        found.append(_position(p, item.staff_id, report, member[1]))
    positions: Positions = state.positions
    for position in found:
        positions.add(position)
    return Response({"accepted": len(found)}, status_code=HTTP_202_ACCEPTED)


@get("/staff/me/tasks", tags=["field staff"], opt=scope("staff:report"))
async def my_tasks(state: State, request: Request[Any, Any, Any],
                   all_: Annotated[bool, Parameter(query="all")] = False) -> list[Task]:
    """My open tasks (with `all`, done and cancelled ones too), newest first."""
    states = ("open", "done", "cancelled") if all_ else ("open",)
    return await _d(state).store.tasks(current_principal(request).sub, states)


@post("/staff/me/tasks/{task_id:int}/done", tags=["field staff"], opt=scope("staff:report"),
      status_code=HTTP_200_OK)
async def task_done(task_id: Id, state: State, request: Request[Any, Any, Any]) -> Task:
    """Mark my task done (an emergency order; a case is handled with /assignments/…/handled)."""
    d = _d(state)
    task = await d.store.task(task_id)
    if task is None or task.staff_id != current_principal(request).sub:
        raise NotFoundException(detail=f"no task {task_id} of yours")
    await d.store.finish_task(task_id)
    done = await d.store.task(task_id)
    assert done is not None
    return done


@post("/staff/me/reports", tags=["field staff"], opt=scope("staff:report"),
      status_code=HTTP_202_ACCEPTED)
async def street_report(data: StreetReport, state: State, request: Request[Any, Any, Any]
                        ) -> StreetReportReceipt:
    """Report an incident found on the street (街道吹哨): to the event hub as a grid-app
    report, the worker as reporter; it becomes a case like any other report."""
    p = current_principal(request)
    at = data.reported_at or datetime.now(UTC)
    if at.tzinfo is None:
        raise ClientException(detail="reported_at needs a time zone")
    key = f"dispatch-{uuid.uuid4().hex}"
    report = ReportIn(channel="grid_app", text=data.text, reported_at=at, lon=data.lon,
                      lat=data.lat, media=list(data.media), category=data.category,
                      idempotency_key=key, source_ref=key,
                      reporter=ReporterContact(name=p.name or None, account=p.sub))
    subject = REPORTS.format(channel="grid_app")
    await _d(state).journal.bus.publish(subject, report, msg_id=key)
    return StreetReportReceipt(idempotency_key=key, subject=subject)


# Read-level: the big screen shows leaders who is on duty; a unit still sees only its own.
@get("/staff", tags=["field staff"], opt=scope("cases:read"))
async def list_staff(state: State, request: Request[Any, Any, Any],
                     unit: Annotated[str | None, Parameter(max_length=64)] = None,
                     on_duty: bool | None = None,
                     limit: Annotated[int, Parameter(ge=1, le=5000)] = 500
                     ) -> list[StaffMember]:
    """A unit's field staff (the command center: any unit's), with their open tasks."""
    p = current_principal(request)
    if not p.sees_all_units():
        unit = unit or p.unit
        if not p.can_see_unit(unit):
            raise PermissionDeniedException(detail=f"unit {p.unit} may not see unit {unit}")
    return await _d(state).store.staff_list(unit, on_duty, limit)


# -- feedback -------------------------------------------------------------------------------------


@post("/feedback/{case_id:int}/rating", tags=["feedback"], opt=scope("cases:report"),
      status_code=HTTP_200_OK)
async def rate_case(case_id: Id, data: Rating, state: State,
                    request: Request[Any, Any, Any]) -> RatingReceipt:
    """A channel adapter returns a reporter's satisfaction (1-5) with the feedback's token;
    `reopen` reopens the case if the reopen window is still open."""
    d = _d(state)
    return await _answer(lambda: feedback.rate(d, case_id, data, current_principal(request)))


@get("/feedback", tags=["feedback"], opt=scope("cases:read"))
async def list_feedback(
    state: State, request: Request[Any, Any, Any],
    case_id: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
    unit: Annotated[str | None, Parameter(max_length=64,
                                          description="the lead unit of the closed round")]
    = None,
    rated: Annotated[bool | None, Parameter(description="only rated (true) or unrated "
                                                        "(false) ones")] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
) -> list[FeedbackRecord]:
    """The feedback sent to reporters of closed cases and their ratings, newest first: of a
    case, of a unit. The command center sees every unit's; a unit its own (a department's
    city unit, its branches' too)."""
    p = current_principal(request)
    department = None
    if not p.sees_all_units():
        if unit is not None and not p.can_see_unit(unit):
            raise PermissionDeniedException(detail=f"unit {p.unit} may not see unit {unit}")
        if unit is None:
            unit, department = (None, p.department) if p.unit == p.department else (p.unit, None)
    return await _d(state).store.feedback_list(case_id, unit, department, rated, limit)


# -- wartime mode ---------------------------------------------------------------------------------


@post("/emergencies", status_code=HTTP_201_CREATED, tags=["wartime"],
      opt=scope("cases:dispatch"))
async def declare_emergency(data: EmergencyIn, state: State,
                            request: Request[Any, Any, Any]) -> Emergency:
    """Declare an emergency over a polygon: the open cases inside get its priority now, new
    ones go to its command unit."""
    d = _d(state)
    return await _answer(lambda: emergency.declare(d, data, current_principal(request)))


@get("/emergencies", tags=["wartime"], opt=scope("cases:read"))
async def list_emergencies(state: State, active: bool | None = None) -> list[Emergency]:
    return await _d(state).store.emergencies(active)


@get("/emergencies/{emergency_id:int}", tags=["wartime"], opt=scope("cases:read"))
async def get_emergency(emergency_id: Id, state: State) -> Emergency:
    found = await _d(state).store.emergency(emergency_id)
    if found is None:
        raise NotFoundException(detail=f"no emergency {emergency_id}")
    return found


@post("/emergencies/{emergency_id:int}/end", tags=["wartime"], opt=scope("cases:dispatch"),
      status_code=HTTP_200_OK)
async def end_emergency(emergency_id: Id, state: State) -> Emergency:
    d = _d(state)
    return await _answer(lambda: emergency.end(d, emergency_id))


@get("/emergencies/{emergency_id:int}/resources", tags=["wartime"], opt=scope("cases:read"))
async def emergency_resources(emergency_id: Id, state: State) -> EmergencyResources:
    """Everything inside the polygon: the spatio-temporal box selection (entities, vehicles,
    cameras…), the open cases and the on-duty field staff."""
    d = _d(state)
    return await _answer(lambda: emergency.resources(d, emergency_id))


@post("/emergencies/{emergency_id:int}/tasks", tags=["wartime"], opt=scope("cases:dispatch"),
      status_code=HTTP_201_CREATED)
async def emergency_tasks(emergency_id: Id, data: EmergencyTask, state: State,
                          request: Request[Any, Any, Any]) -> list[Task]:
    """Issue an order to field staff (e.g. those the resources listed)."""
    d = _d(state)
    return await _answer(lambda: emergency.issue_tasks(d, emergency_id, data,
                                                       current_principal(request)))


ROUTES: list[ControllerRouterHandler] = [
    list_rules, add_rule, get_rule, rule_versions, update_rule, delete_rule, preview_route,
    preview_rule,
    list_assignments, get_assignment, *UNIT_ACTION_ROUTES, decide_extension, assign_staff,
    list_escalations, my_duty, my_position, staff_duty, staff_position, staff_positions,
    my_tasks, task_done,
    street_report, list_staff, rate_case, list_feedback, declare_emergency, list_emergencies, get_emergency,
    end_emergency, emergency_resources, emergency_tasks]


def hub_client(options: DispatchSettings) -> httpx.AsyncClient:
    """The event hub over HTTP with dispatch's service credentials (CITYOS_CLIENT_ID/SECRET)."""
    auth = ClientCredentials(AuthSettings.from_env().issuer,
                             os.environ.get("CITYOS_CLIENT_ID", "dispatch"),
                             os.environ.get("CITYOS_CLIENT_SECRET", ""))
    # Idle connections are dropped before the hub's server drops them (uvicorn: after 5 s, as
    # httpx by default): else a dispatch may go out on a connection closing under it, fail,
    # and wait for the redelivery.
    return httpx.AsyncClient(base_url=options.events_url, auth=auth, timeout=10,
                             limits=httpx.Limits(keepalive_expiry=HUB_KEEPALIVE_S))


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              dispatch_settings: DispatchSettings | None = None,
              hub_http: httpx.AsyncClient | None = None) -> Litestar:
    """`hub_http`: how to reach the event hub (tests pass one bound to the hub in-process)."""
    options = dispatch_settings or DispatchSettings.from_env()
    units = CityUnits(City(settings.city_dir))

    def make_dispatcher(pool: asyncpg.Pool, bus: Bus) -> Dispatcher:
        return Dispatcher(pool, DispatchStore(pool), EventHub(hub_http or hub_client(options)),
                          Journal(bus), units, options)

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        store = DispatchStore(pool)
        if options.seed_rules and not await store.rules(include_deleted=True):
            await store.add_rules(seed(units), "system:seed")
        dispatcher = make_dispatcher(pool, bus)  # the API's
        positions = Positions(bus, store, options)
        worker = Worker(settings, SCHEMA, make_dispatcher,
                        pool_size=options.consumer_parallel + 1)
        app.state.update(dispatcher=dispatcher, positions=positions, worker=worker,
                         roster=Roster(store))
        await worker.start()
        positions.start()
        # What start-up made lives as long as the process: out of the collector's way, so a
        # full collection pauses the loop (and acceptance -> dispatch) for less.
        gc.freeze()

    async def stop(app: Litestar) -> None:
        if "worker" in app.state:
            await app.state.worker.stop()
            await app.state.positions.stop()

    app = create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=ROUTES, start=start,
        auth=auth, title="CityOS dispatch", pool_options=POOL_OPTIONS,
        description="One dispatch: routing rules, joint handling, deadlines with reminders "
                    "and escalation, units' and field staff's actions, closure feedback, "
                    "wartime mode.")
    app.on_shutdown.insert(0, stop)
    return app
