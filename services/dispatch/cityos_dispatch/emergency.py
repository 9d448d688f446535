"""Wartime mode (战时模式): an emergency over a polygon.

While it is active, a case accepted inside the polygon goes to the emergency's command unit
(and its assisting units) with the emergency's priority (dispatcher.decide); the open cases
already inside get that priority now, their deadlines shortened to its caps and their timers
re-armed. The resources inside are the spatio-temporal box selection, plus dispatch's own open
cases and on-duty staff there.
"""

import json
from typing import TYPE_CHECKING, Any

import shapely

from cityos_contracts.dispatch import (
    Emergency,
    EmergencyIn,
    EmergencyResources,
    EmergencyTask,
    Task,
)
from cityos_contracts.identity import Principal
from cityos_dispatch.rules import RuleError, raised
from cityos_dispatch.staff import QueryFailed, box_select
from cityos_dispatch.store import NotFound
from cityos_dispatch.timers import deadlines, timer_rows

if TYPE_CHECKING:
    from cityos_dispatch.dispatcher import Dispatcher


def check_polygon(polygon: dict[str, Any]) -> None:
    try:
        geometry = shapely.from_geojson(json.dumps(polygon))
    except Exception as exc:
        raise RuleError(f"polygon is not GeoJSON: {exc}") from exc
    if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid or \
            geometry.is_empty:
        raise RuleError("polygon must be a valid GeoJSON Polygon or MultiPolygon")


async def declare(d: "Dispatcher", body: EmergencyIn, principal: Principal) -> Emergency:
    check_polygon(body.polygon)
    for unit in (body.lead, *body.assisting):
        if unit not in d.units.units:
            raise RuleError(f"unknown unit {unit!r}")
    async with d.pool.acquire() as conn, conn.transaction():
        emergency = await d.store.add_emergency(
            conn, body.name, body.polygon, body.lead,
            [u for u in dict.fromkeys(body.assisting) if u != body.lead], body.priority,
            principal.sub)
        inside = await d.store.open_in_area(conn, json.dumps(body.polygon))
        raised_now = []
        for a in inside:
            priority = raised(a.priority, body.priority)
            if priority == a.priority:
                continue
            category = d.units.categories.get(a.category or "")
            accept, dispose = deadlines(category, priority, a.dispatched_at, d.settings)
            accept, dispose = min(accept, a.accept_due), min(dispose, a.dispose_due)
            await d.store.set_assignment(conn, a.case_id, a.round_seq, priority=priority,
                                         accept_due=accept, dispose_due=dispose,
                                         emergency_id=emergency.emergency_id)
            await d.store.cancel_timers(conn, a.case_id)
            due = {"dispose": dispose} | ({"accept": accept} if a.state == "dispatched" else {})
            await d.store.add_timers(conn, timer_rows(a.case_id, a.round_seq, a.lead,
                                                      a.dispatched_at, due, d.settings.remind_at))
            raised_now.append((a, priority, accept, dispose))
        await d.store.count_raised(conn, emergency.emergency_id, len(raised_now))
    for a, priority, accept, dispose in raised_now:
        await d.journal.record(
            a.case_id, "priority_raised", actor=principal.sub, unit=a.lead,
            round_seq=a.round_seq, priority=priority, accept_due=accept, dispose_due=dispose,
            emergency_id=emergency.emergency_id, reason=f"emergency {body.name}")
    found = await d.store.emergency(emergency.emergency_id)
    assert found is not None
    await d.journal.emergency(found)
    return found


async def end(d: "Dispatcher", emergency_id: int) -> Emergency:
    emergency = await d.store.end_emergency(emergency_id)
    await d.journal.emergency(emergency)
    return emergency


async def resources(d: "Dispatcher", emergency_id: int) -> EmergencyResources:
    emergency = await d.store.emergency(emergency_id)
    if emergency is None:
        raise NotFound(f"no emergency {emergency_id}")
    area = json.dumps(emergency.polygon)
    selection, error = None, None
    try:
        selection = await box_select(d.journal.bus, d.settings, emergency.polygon)
    except QueryFailed as exc:  # the cases and staff still answer
        error = exc.detail
    return EmergencyResources(
        emergency_id=emergency_id, selection=selection,
        cases=await d.store.open_in_area(d.pool, area),
        staff=await d.store.staff_list(None, True, 5000, area=area), selection_error=error)


async def issue_tasks(d: "Dispatcher", emergency_id: int, body: EmergencyTask,
                      principal: Principal) -> list[Task]:
    emergency = await d.store.emergency(emergency_id)
    if emergency is None:
        raise NotFound(f"no emergency {emergency_id}")
    if emergency.ended_at is not None:
        raise RuleError(f"emergency {emergency_id} has ended")
    members = []
    for staff_id in dict.fromkeys(body.staff_ids):
        member = await d.store.staff(staff_id)
        if member is None:
            raise NotFound(f"no field staff {staff_id!r}")
        members.append(member)
    tasks = []
    async with d.pool.acquire() as conn, conn.transaction():
        for member in members:
            tasks.append(await d.store.add_task(conn, member.staff_id, member.unit,
                                                body.case_id, emergency_id, body.text, None))
    if body.case_id is not None:
        for member in members:
            await d.journal.record(body.case_id, "staff_assigned", actor=principal.sub,
                                   unit=member.unit, staff_id=member.staff_id,
                                   emergency_id=emergency_id, reason=body.text)
    return tasks
