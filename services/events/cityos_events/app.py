"""The event hub's HTTP API: reports in, cases out, operator and unit actions, a live feed."""

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec
import shapely
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import (
    ClientException,
    NotFoundException,
    PermissionDeniedException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import ControllerRouterHandler

from cityos_contracts.cases import (
    CASE_STATUSES,
    Case,
    CaseAction,
    CaseDetail,
    CasePage,
    Classification,
    ContactView,
    Report,
    ReportIn,
    ReportReceipt,
)
from cityos_contracts.identity import Principal
from cityos_events import open311
from cityos_events.classify import Classifier, for_city
from cityos_events.config import EventsSettings
from cityos_events.consumers import start_consumers
from cityos_events.feed import case_events
from cityos_events.intake import Intake, KeyReused, Rejected, category_infos, search_terms
from cityos_events.lifecycle import InvalidTransition
from cityos_events.location import Locator
from cityos_events.merge import Merger
from cityos_events.publisher import EventPublisher
from cityos_events.routing import default_unit
from cityos_events.store import Actor, CaseStore, Conflict, Filters, NotFound
from cityos_kit.app import create_service_app
from cityos_kit.audit import personal_data_read
from cityos_kit.auth import PUBLIC, AuthPlugin, current_principal, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings

SCHEMA = "events"
MIGRATIONS = Path(__file__).parent / "migrations"
# Reasons are required where a person overrides the flow: the history must say why.
NEEDS_REASON = frozenset({"reject", "return", "rework", "reopen", "merge", "split",
                          "escalate", "note"})


class Unprocessable(ClientException):
    status_code = 422


class ConflictError(ClientException):
    status_code = 409


def _intake(state: State) -> Intake:
    intake: Intake = state.intake
    return intake


def _store(state: State) -> CaseStore:
    store: CaseStore = state.store
    return store


def _actor(request: Request[Any, Any, Any]) -> Actor:
    principal = current_principal(request)
    return Actor(principal.sub, principal.unit)


def _street_of(unit: str) -> str | None:
    """The street a street office (JD-<street code>) answers for."""
    return unit.removeprefix("JD-") if unit.startswith("JD-") else None


def _sees(principal: Principal, case: Case) -> bool:
    """The command center sees all; a unit the cases it handles (a department's own unit,
    its branches' too); a street office, and its grid staff, every case in its street."""
    return principal.sees_all_units() or (
        case.handling_unit is not None and principal.can_see_unit(case.handling_unit)) or (
        case.location.street is not None and _street_of(principal.unit) == case.location.street)


async def _visible_case(request: Request[Any, Any, Any], state: State, case_id: int) -> Case:
    case = await _store(state).case(case_id)
    if case is None:
        raise NotFoundException(detail=f"no case {case_id}")
    principal = current_principal(request)
    if not _sees(principal, case):
        raise PermissionDeniedException(
            detail=f"case {case_id} is handled by {case.handling_unit}; unit {principal.unit} "
                   "may not see it")
    return case


async def _answer(call: Callable[[], Any]) -> Any:
    """Run a store action, mapping its refusals to HTTP answers."""
    try:
        return await call()
    except NotFound as exc:
        raise NotFoundException(detail=str(exc)) from exc
    except (Conflict, InvalidTransition) as exc:
        raise ConflictError(detail=str(exc)) from exc


# -- reports --------------------------------------------------------------------------------


@post("/reports", status_code=HTTP_201_CREATED, tags=["reports"], opt=scope("cases:report"))
async def create_report(
    data: ReportIn, state: State,
    idempotency_key: Annotated[str | None, Parameter(
        header="Idempotency-Key", description="same as the body's idempotency_key")] = None,
) -> Response[ReportReceipt]:
    """Take in one report: locate, classify, merge into a case or open one (201). Posting the
    same report again with the same idempotency key answers the first receipt (200,
    `duplicate: true`); the same key with a different report is a 409."""
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= 200:
            raise ClientException(detail="Idempotency-Key must be 1 to 200 characters")
        if data.idempotency_key not in (None, idempotency_key):
            raise ClientException(detail="Idempotency-Key header and body disagree")
        data = msgspec.structs.replace(data, idempotency_key=idempotency_key)
    try:
        receipt, created = await _intake(state).take(data)
    except Rejected as exc:
        raise Unprocessable(detail=str(exc)) from exc
    except KeyReused as exc:
        raise ConflictError(detail=str(exc)) from exc
    return Response(receipt, status_code=HTTP_201_CREATED if created else HTTP_200_OK)


@get("/reports/{report_id:int}", tags=["reports"], opt=scope("cases:read"))
async def get_report(report_id: int, state: State, request: Request[Any, Any, Any]) -> Report:
    """One report, its reporter's contact masked."""
    report = await _store(state).report(report_id)
    if report is None:
        raise NotFoundException(detail=f"no report {report_id}")
    await _visible_case(request, state, report.case_id)
    return report


@get("/categories", tags=["reports"], opt=PUBLIC, sync_to_thread=False)
def list_categories(state: State) -> list[dict[str, Any]]:
    """The city's incident categories (code, name, department, handling level, deadlines)."""
    categories: list[dict[str, Any]] = state.city.categories
    return categories


@get("/classify", tags=["reports"], opt=scope("cases:read"), sync_to_thread=False)
def classify_text(text: Annotated[str, Parameter(min_length=1, max_length=4000)],
                  state: State) -> Classification:
    """What the classifier makes of a text (nothing is stored)."""
    classifier: Classifier = state.classifier
    return classifier.classify(text)


# -- cases ----------------------------------------------------------------------------------


async def _detail(request: Request[Any, Any, Any], state: State, case_id: int,
                  after_action: bool = False) -> CaseDetail:
    store = _store(state)
    # After its own action (a unit returning a case) the caller is answered even if the case
    # has just left its hands.
    case = await store.case(case_id) if after_action else None
    case = case or await _visible_case(request, state, case_id)
    reports, history = await asyncio.gather(store.reports(case_id), store.history(case_id))
    return CaseDetail(case=case, reports=reports, history=history)


@get("/cases/{case_id:int}", tags=["cases"], opt=scope("cases:read"))
async def get_case(case_id: int, state: State, request: Request[Any, Any, Any]) -> CaseDetail:
    """A case with its reports (contacts masked) and its history, oldest event first."""
    return await _detail(request, state, case_id)


@get("/cases/{case_id:int}/contacts", tags=["cases"], opt=scope("cases:act"))
async def get_contacts(case_id: int, state: State,
                       request: Request[Any, Any, Any]) -> ContactView:
    """The reporters' contacts, unmasked, for the unit handling the case only (audited)."""
    case = await _visible_case(request, state, case_id)
    principal = current_principal(request)
    if principal.unit != case.handling_unit:
        raise PermissionDeniedException(
            detail=f"only the unit handling case {case_id} ({case.handling_unit}) may read "
                   "its reporters' contacts")
    contacts = await _store(state).contacts(case_id)
    await personal_data_read(request, f"case/{case_id}/reporters",
                             detail=f"{len(contacts)} contacts")
    return ContactView(case_id=case_id, contacts=contacts)


@get("/cases", tags=["cases"], opt=scope("cases:read"))
async def search_cases(
    state: State, request: Request[Any, Any, Any],
    status: Annotated[list[str] | None, Parameter(description="one or more statuses")] = None,
    category: str | None = None,
    division: Annotated[str | None, Parameter(description="district (6 digits) or street (9)")]
    = None,
    start: Annotated[datetime | None, Parameter(description="reported at or after (with zone)")]
    = None,
    end: Annotated[datetime | None, Parameter(description="reported before")] = None,
    text: Annotated[str | None, Parameter(max_length=200)] = None,
    within: Annotated[str | None, Parameter(description="a GeoJSON Polygon/MultiPolygon")] = None,
    bbox: Annotated[str | None, Parameter(description="west,south,east,north")] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> CasePage:
    """Cases newest first, by status, category, division, reported time, text (every
    character pair of it appears in a report) and area (`within` a polygon, or `bbox`)."""
    unknown = [s for s in status or [] if s not in CASE_STATUSES]
    if unknown:
        raise ClientException(detail=f"unknown status {unknown}; one of {list(CASE_STATUSES)}")
    if any(t is not None and t.tzinfo is None for t in (start, end)):
        raise ClientException(detail="start and end need a time zone, e.g. 2026-11-21T08:00+08:00")
    terms = search_terms(text) if text else []
    if text is not None and (len(terms) == 0 or len(terms[0]) < 2):
        raise ClientException(detail="text must have at least two characters")
    area = _area(within, bbox)
    principal = current_principal(request)
    unit = None if principal.sees_all_units() else principal.unit
    filters = Filters(statuses=status or (), category=category, division=division,
                      start=start, end=end, bigrams=terms,
                      within=area, unit=unit,
                      department_unit=unit is not None and unit == principal.department,
                      street=_street_of(unit) if unit else None,
                      limit=limit, cursor=cursor)
    try:
        items, next_cursor = await _store(state).search(filters)
    except ValueError as exc:
        raise ClientException(detail=str(exc)) from exc
    return CasePage(items=items, next_cursor=next_cursor)


def _area(within: str | None, bbox: str | None) -> str | None:
    if within and bbox:
        raise ClientException(detail="give within or bbox, not both")
    if bbox:
        try:
            west, south, east, north = (float(v) for v in bbox.split(","))
        except ValueError as exc:
            raise ClientException(detail="bbox is west,south,east,north") from exc
        return json.dumps(shapely.geometry.mapping(shapely.box(west, south, east, north)))
    if within:
        try:
            geometry = shapely.from_geojson(within)
        except Exception as exc:
            raise ClientException(detail=f"within is not a GeoJSON geometry: {exc}") from exc
        if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid:
            raise ClientException(detail="within must be a valid Polygon or MultiPolygon")
        return within
    return None


@get("/cases/feed", tags=["cases"], opt=scope("cases:read"))
async def feed(
    state: State, request: Request[Any, Any, Any], case_id: int | None = None,
    since: Annotated[int | None, Parameter(ge=1, description="stream sequence to start at")]
    = None,
    max_events: Annotated[int | None, Parameter(ge=1, le=100_000)] = None,
    last_event_id: Annotated[str | None, Parameter(header="Last-Event-ID")] = None,
) -> ServerSentEvent:
    """Server-sent events of every case (the command center) or one case: each event's data
    is a `cityos.case_event.v1`, its id the stream sequence (reconnect with Last-Event-ID)."""
    principal = current_principal(request)
    if case_id is not None:
        await _visible_case(request, state, case_id)
    elif not principal.sees_all_units():
        raise PermissionDeniedException(detail="the feed of every case is for the command "
                                               "center; pass case_id")
    if last_event_id and last_event_id.isdigit():
        since = int(last_event_id) + 1
    return ServerSentEvent(case_events(state.bus, case_id, since, max_events))


# -- actions --------------------------------------------------------------------------------


def _action_route(action: str, needed: str, summary: str) -> HTTPRouteHandler:
    async def act(case_id: int, data: CaseAction, state: State,
                  request: Request[Any, Any, Any]) -> CaseDetail:
        if action in NEEDS_REASON and not data.reason.strip():
            raise Unprocessable(detail=f"{action} needs a reason")
        principal = current_principal(request)
        case = None
        # The center and services see every case, and the action's own lock finds it (or
        # answers 404): read it first only to check a unit's rights or pick the default unit.
        if not principal.sees_all_units() or (action == "dispatch" and data.unit is None):
            case = await _visible_case(request, state, case_id)
            _check_actor(action, principal, case)
        store = _store(state)
        extra: dict[str, Any] = {}
        if action == "classify":
            if data.category is None or data.category not in store.categories:
                raise Unprocessable(detail="classify needs a known category")
            extra["classification"] = Classification(category=data.category, confidence=1.0,
                                                     method="operator")
        if action == "dispatch":
            extra["unit"] = _dispatch_unit(state, case, data.unit)
        events = await _answer(lambda: store.act(case_id, action, _actor(request), data.reason,
                                                 data.expected_version, **extra))
        await state.publisher.publish(events)
        return await _detail(request, state, case_id, after_action=True)

    act.__name__ = f"case_{action}"
    act.__doc__ = summary
    return post(f"/cases/{{case_id:int}}/{action}", tags=["case actions"], opt=scope(needed),
                status_code=HTTP_200_OK, name=f"case_{action}")(act)


def _check_actor(action: str, principal: Principal, case: Case) -> None:
    """Units act on the cases they handle; verification is by the center or the street's
    grid staff, never by the unit that did the work."""
    if principal.sees_all_units():
        return
    if action in ("start", "finish", "return", "note") and \
            principal.unit != case.handling_unit:
        raise PermissionDeniedException(
            detail=f"case {case.case_id} is handled by {case.handling_unit}, not {principal.unit}")
    if action in ("verify", "rework") and not (
            principal.unit == f"JD-{case.location.street}" or "field_staff" in principal.roles):
        raise PermissionDeniedException(detail="verification is by the command center or the "
                                               "street's grid staff")


def _dispatch_unit(state: State, case: Case | None, unit: str | None) -> str:
    city: City = state.city
    units = {u["id"] for u in city.units}
    if unit is not None:
        if unit not in units:
            raise Unprocessable(detail=f"unknown unit {unit!r}")
        return unit
    assert case is not None  # (read when no unit is named)
    if case.category is None:
        raise ConflictError(detail="the case has no category: classify it first")
    return default_unit(_store(state).categories[case.category], case.location,
                        city.departments, units)


ACTIONS = [
    _action_route("classify", "cases:dispatch", "Set the category (operator); received → "
                  "classified."),
    _action_route("accept", "cases:dispatch", "The command center accepts the case."),
    _action_route("reject", "cases:dispatch", "Not a city matter, spam, or no incident "
                  "(reason required)."),
    _action_route("dispatch", "cases:dispatch", "Send to a unit (default: by category and "
                  "place)."),
    _action_route("close", "cases:dispatch", "Close a verified case."),
    _action_route("reopen", "cases:dispatch", "Reopen a closed or rejected case (reason "
                  "required)."),
    _action_route("start", "cases:act", "The handling unit starts work."),
    _action_route("finish", "cases:act", "The handling unit reports it done."),
    _action_route("return", "cases:act", "The handling unit sends it back (reason required)."),
    _action_route("verify", "cases:act", "Checked on site: done."),
    _action_route("rework", "cases:act", "Checked on site: not done (reason required)."),
    _action_route("escalate", "cases:dispatch", "A deadline was missed: record the escalation "
                  "(dispatch; reason required, status unchanged)."),
    _action_route("note", "cases:act", "Record progress or a decision on the case (reason "
                  "required, status unchanged)."),
]


@post("/cases/{case_id:int}/merge", tags=["case actions"], opt=scope("cases:dispatch"),
      status_code=HTTP_200_OK)
async def merge_case(case_id: int, data: CaseAction, state: State,
                     request: Request[Any, Any, Any]) -> CaseDetail:
    """Merge this case into `into_case_id` by hand: its reports move there (reason required)."""
    if data.into_case_id is None or not data.reason.strip():
        raise Unprocessable(detail="merge needs into_case_id and a reason")
    await _visible_case(request, state, case_id)
    await _visible_case(request, state, data.into_case_id)
    store = _store(state)
    target = data.into_case_id
    events = await _answer(lambda: store.merge(case_id, target, _actor(request), data.reason,
                                               data.expected_version))
    await state.publisher.publish(events)
    return await _detail(request, state, target)


@post("/cases/{case_id:int}/split", tags=["case actions"], opt=scope("cases:dispatch"),
      status_code=HTTP_201_CREATED)
async def split_case(case_id: int, data: CaseAction, state: State,
                     request: Request[Any, Any, Any]) -> CaseDetail:
    """Undo a wrong merge: `report_ids` leave this case for a new one, answered (reason
    required)."""
    if not data.report_ids or not data.reason.strip():
        raise Unprocessable(detail="split needs report_ids and a reason")
    await _visible_case(request, state, case_id)
    store = _store(state)
    new_id, events = await _answer(lambda: store.split(
        case_id, data.report_ids, _actor(request), data.reason, data.expected_version))
    await state.publisher.publish(events)
    return await _detail(request, state, new_id)


ROUTES: list[ControllerRouterHandler] = [
    create_report, get_report, list_categories, classify_text, get_case, get_contacts,
    search_cases, feed, *ACTIONS, merge_case, split_case, open311.router]

async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection back in the pool needs no reset query (a round trip on every release):
    the event hub leaves no session state, only transactions, which asyncpg rolls back."""


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              events_settings: EventsSettings | None = None) -> Litestar:
    city = City(settings.city_dir)
    options = events_settings or EventsSettings.from_env()
    gazetteer = options.gazetteer_path(settings.city_dir)
    locator = Locator.load(city.divisions, gazetteer)
    places = [p["name"] for p in json.loads(gazetteer.read_text(encoding="utf-8"))["places"]]
    categories = category_infos(city.categories)

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        classifier = await asyncio.to_thread(for_city, city, places, options)
        store = CaseStore(pool, categories)
        publisher = EventPublisher(bus, store)
        intake = Intake(store, classifier, locator, publisher, categories, options,
                        Merger(options, places=places))
        app.state.update(store=store, bus=bus, city=city, intake=intake, publisher=publisher,
                         classifier=classifier, settings=options)
        start_consumers(bus, intake)
        app.state.relay = asyncio.create_task(publisher.relay(), name="case-event-relay")

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=ROUTES, start=start,
        auth=auth, title="CityOS event hub", pool_options={"reset": _keep_session},
        description="One door in for every incident: reports from every channel (and Open311) "
                    "become classified, located, de-duplicated cases with one history.",
    )

