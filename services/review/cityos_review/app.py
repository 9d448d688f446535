"""The review's HTTP API: figures per unit and department, data contribution, the ranking and
its weights, drill-down to rounds and case timelines, periodic reports, and the rebuild."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from litestar import Litestar, Request, Response, get, post, put
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException, PermissionDeniedException
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from cityos_contracts.identity import Principal
from cityos_contracts.review import (
    FIGURES,
    CaseTimeline,
    Contribution,
    Ranking,
    RankingWeights,
    RebuildStatus,
    RoundPage,
    UnitFigures,
)
from cityos_kit.app import create_service_app
from cityos_kit.auth import AuthPlugin, current_principal, scope
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import Settings
from cityos_kit.times import check_times
from cityos_review import metrics, ranking, report
from cityos_review.config import ReviewSettings
from cityos_review.consumers import start_consumers
from cityos_review.rebuild import Rebuilder
from cityos_review.store import ReviewStore

SCHEMA = "review"
MIGRATIONS = Path(__file__).parent / "migrations"
Name = Annotated[str, Parameter(min_length=1, max_length=64)]
When = Annotated[datetime | None, Parameter(description="with a time zone; default: the last "
                                                        "30 days")]


def _store(state: State) -> ReviewStore:
    store: ReviewStore = state.store
    return store


def _period(state: State, start: datetime | None, end: datetime | None
            ) -> tuple[datetime, datetime]:
    check_times(start, end)
    options: ReviewSettings = state.options
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=options.default_days)
    if start >= end:
        raise ClientException(detail="start must be before end")
    return start, end


def _department_allowed(p: Principal, department: str) -> None:
    if not (p.sees_all_units() or p.department == department):
        raise PermissionDeniedException(detail=f"unit {p.unit} may not see department "
                                               f"{department}'s figures")


def _scope_department(p: Principal, department: str | None) -> str | None:
    """A leader of a department sees their department; the center every one."""
    if department is not None:
        _department_allowed(p, department)
        return department
    return None if p.sees_all_units() else p.department


@get("/review/units", tags=["figures"], opt=scope("review:read"))
async def unit_figures(state: State, request: Request[Any, Any, Any], start: When = None,
                       end: When = None, department: Name | None = None) -> list[UnitFigures]:
    """Every unit's figures over the period (dispatched in [start, end))."""
    start, end = _period(state, start, end)
    department = _scope_department(current_principal(request), department)
    return await metrics.figures(_store(state).pool, "unit", start, end, None, department)


@get("/review/units/{unit:str}", tags=["figures"], opt=scope("review:read"))
async def one_unit(unit: Name, state: State, request: Request[Any, Any, Any],
                   start: When = None, end: When = None) -> UnitFigures:
    start, end = _period(state, start, end)
    store = _store(state)
    _department_allowed(current_principal(request), store.department(unit))
    found = await metrics.figures(store.pool, "unit", start, end, unit)
    if not found:
        raise NotFoundException(detail=f"no case was dispatched to {unit} in the period")
    return found[0]


@get("/review/departments", tags=["figures"], opt=scope("review:read"))
async def department_figures(state: State, request: Request[Any, Any, Any], start: When = None,
                             end: When = None) -> list[UnitFigures]:
    """Every department's figures (its units together) over the period."""
    start, end = _period(state, start, end)
    department = _scope_department(current_principal(request), None)
    return await metrics.figures(_store(state).pool, "department", start, end, department)


@get("/review/departments/{department:str}", tags=["figures"], opt=scope("review:read"))
async def one_department(department: Name, state: State, request: Request[Any, Any, Any],
                         start: When = None, end: When = None) -> UnitFigures:
    start, end = _period(state, start, end)
    _department_allowed(current_principal(request), department)
    found = await metrics.figures(_store(state).pool, "department", start, end, department)
    if not found:
        raise NotFoundException(detail=f"no case was dispatched to {department} in the period")
    return found[0]


@get("/review/contribution", tags=["figures"], opt=scope("review:read"))
async def contribution(state: State, request: Request[Any, Any, Any], start: When = None,
                       end: When = None, department: Name | None = None) -> list[Contribution]:
    """Each department's data contribution: volume, validity, completeness, freshness."""
    start, end = _period(state, start, end)
    department = _scope_department(current_principal(request), department)
    return await metrics.contribution(_store(state).pool, start, end, department)


async def _ranking(state: State, level: str, start: datetime, end: datetime) -> Ranking:
    store = _store(state)
    figures = await metrics.figures(store.pool, level, start, end)  # type: ignore[arg-type]
    data = {c.department: c for c in await metrics.contribution(store.pool, start, end)}
    return ranking.rank(level, figures, data, await store.weights(), start, end)


@get("/review/ranking", tags=["ranking"], opt=scope("review:read"))
async def get_ranking(state: State, level: Literal["unit", "department"] = "department",
                      start: When = None, end: When = None) -> Ranking:
    """Units or departments by score, each with its components and the formula."""
    start, end = _period(state, start, end)
    return await _ranking(state, level, start, end)


@get("/review/ranking/weights", tags=["ranking"], opt=scope("review:read"))
async def get_weights(state: State) -> RankingWeights:
    return await _store(state).weights()


@put("/review/ranking/weights", tags=["ranking"], opt=scope("review:admin"))
async def set_weights(data: RankingWeights, state: State,
                      request: Request[Any, Any, Any]) -> RankingWeights:
    """Change the weights (a city's assessment rules)."""
    if not any(getattr(data, c) > 0 for c in ranking.COMPONENTS):
        raise ClientException(detail="at least one weight must be above 0")
    await _store(state).set_weights(data, current_principal(request).sub)
    return data


@get("/review/drill", tags=["drill-down"], opt=scope("review:read"))
async def drill(state: State, request: Request[Any, Any, Any],
                figure: Annotated[str, Parameter(description=", ".join(FIGURES))],
                unit: Name | None = None, department: Name | None = None,
                start: When = None, end: When = None,
                limit: Annotated[int, Parameter(ge=1, le=5000)] = 500) -> RoundPage:
    """The rounds behind a figure (e.g. `disposed_late` of a unit), each with its case id:
    follow /review/cases/{case_id}/timeline for the whole story."""
    if figure not in metrics.DRILL:
        raise ClientException(detail=f"figure is one of {', '.join(FIGURES)}")
    start, end = _period(state, start, end)
    p = current_principal(request)
    if unit is not None:
        _department_allowed(p, _store(state).department(unit))
    else:
        department = _scope_department(p, department)
    items = await metrics.drill(_store(state).pool, figure, start, end, unit, department, limit)
    return RoundPage(figure=figure, unit=unit, department=department, start=start, end=end,
                     items=items)


@get("/review/cases/{case_id:int}/timeline", tags=["drill-down"], opt=scope("review:read"))
async def case_timeline(case_id: Annotated[int, Parameter(ge=1, le=2**63 - 1)], state: State,
                        request: Request[Any, Any, Any]) -> CaseTimeline:
    """Every case and dispatch event of the case in time order, and its rounds."""
    found = await metrics.timeline(_store(state).pool, case_id)
    if found is None:
        raise NotFoundException(detail=f"the review has no events of case {case_id}")
    p = current_principal(request)
    if not p.sees_all_units() and not any(r.department == p.department for r in found.rounds):
        raise PermissionDeniedException(detail=f"case {case_id} was not handled by "
                                               f"{p.department}")
    return found


async def _report_data(state: State, request: Request[Any, Any, Any], department: str,
                       period: str, day: datetime | None) -> report.ReportData:
    _department_allowed(current_principal(request), department)
    city: City = state.city
    if department not in city.departments:
        raise NotFoundException(detail=f"no department {department}")
    check_times(day)
    options: ReviewSettings = state.options
    tz = ZoneInfo(options.timezone)
    start, end = report.period_bounds(period, day or datetime.now(UTC), tz)
    pool = _store(state).pool
    totals = await metrics.figures(pool, "department", start, end, department)
    ranked = await _ranking(state, "department", start, end)
    mine = next((e for e in ranked.entries if e.name == department), None)
    data = await metrics.contribution(pool, start, end, department)
    late = await metrics.drill(pool, "disposed_late", start, end, None, department, 50) + \
        await metrics.drill(pool, "escalated", start, end, None, department, 50)
    return report.ReportData(
        department=department, department_name=city.departments[department]["name"],
        period=period, start=start, end=end, total=totals[0] if totals else None,
        units=await metrics.figures(pool, "unit", start, end, None, department),
        daily=await metrics.daily(pool, department, start, end, options.timezone),
        contribution=data[0] if data else None, rank=mine,
        ranked=sum(1 for e in ranked.entries if e.rank is not None),
        late=sorted({(r.case_id, r.round_seq): r for r in late}.values(),
                    key=lambda r: r.dispatched_at), tz=tz)


Period = Annotated[Literal["weekly", "monthly"], Parameter(description="weekly or monthly")]
Day = Annotated[datetime | None, Parameter(description="a moment in the week or month (with a "
                                                       "time zone); default: now")]


@get("/review/reports/{department:str}/report.html", tags=["reports"],
     opt=scope("review:read"), media_type="text/html")
async def report_html(department: Name, state: State, request: Request[Any, Any, Any],
                      period: Period = "weekly", date: Day = None) -> Response[str]:
    """The department's weekly or monthly report as an HTML page with charts."""
    data = await _report_data(state, request, department, period, date)
    page = await asyncio.to_thread(report.render_html, data)
    return Response(page, media_type="text/html; charset=utf-8")


@get("/review/reports/{department:str}/report.pdf", tags=["reports"],
     opt=scope("review:read"), media_type="application/pdf")
async def report_pdf(department: Name, state: State, request: Request[Any, Any, Any],
                     period: Period = "weekly", date: Day = None) -> Response[bytes]:
    """The same report as a PDF to download."""
    data = await _report_data(state, request, department, period, date)
    pdf = await asyncio.to_thread(report.render_pdf, data)
    name = f"{department}-{period}-{data.start.astimezone(data.tz):%Y%m%d}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@post("/review/rebuild", tags=["rebuild"], opt=scope("review:admin"),
      status_code=HTTP_202_ACCEPTED)
async def start_rebuild(state: State) -> RebuildStatus:
    """Rebuild every figure from the case and dispatch streams, from their start (in the
    background; the figures stay readable meanwhile)."""
    rebuilder: Rebuilder = state.rebuilder
    return rebuilder.start()


@get("/review/rebuild", tags=["rebuild"], opt=scope("review:admin"), status_code=HTTP_200_OK)
async def rebuild_status(state: State) -> RebuildStatus:
    rebuilder: Rebuilder = state.rebuilder
    return rebuilder.status


ROUTES: list[ControllerRouterHandler] = [
    unit_figures, one_unit, department_figures, one_department, contribution, get_ranking,
    get_weights, set_weights, drill, case_timeline, report_html, report_pdf, start_rebuild,
    rebuild_status]


def build_app(settings: Settings, auth: AuthPlugin | None = None,
              review_settings: ReviewSettings | None = None) -> Litestar:
    options = review_settings or ReviewSettings.from_env()
    city = City(settings.city_dir)
    departments = {u["id"]: u["department"] for u in city.units}

    async def start(app: Litestar, pool: asyncpg.Pool, bus: Bus) -> None:
        store = ReviewStore(pool, departments)
        writing = asyncio.Lock()
        app.state.update(store=store, city=city, options=options,
                         rebuilder=Rebuilder(bus, pool, store, writing))
        start_consumers(bus, store, writing)

    return create_service_app(
        settings, schema=SCHEMA, migrations=MIGRATIONS, route_handlers=ROUTES, start=start,
        auth=auth, title="CityOS efficiency review",
        description="行政问效: how every unit and department handles its cases, and what data "
                    "each department contributes; rebuildable from the event streams.")
