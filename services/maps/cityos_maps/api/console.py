"""The operators' console (middle screen): the case queue, a case, the actions on it (and the
person of the handling unit it goes to), routing rules with a preview of where a case would go,
dataset registrations and dead letters.

Everything is done as the signed-in person, with their token: the event hub, dispatch and
ingestion decide what this person may see and do, and record who did it.
"""

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from litestar import Request, get, post, put
from litestar.datastructures import State
from litestar.exceptions import ClientException
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from cityos_kit.auth import PUBLIC, current_principal, require_scope, scope
from cityos_maps.api.common import token_of, upstreams
from cityos_maps.cases import DONE
from cityos_maps.geo import distance_m

CASE_ACTIONS = frozenset({"classify", "accept", "reject", "dispatch", "close", "reopen", "start",
                          "finish", "return", "verify", "rework", "merge", "split"})
# The command center's own actions; the rest are the handling unit's (and field staff's).
CENTER_ACTIONS = frozenset({"classify", "accept", "reject", "dispatch", "close", "reopen",
                            "merge", "split"})
OPEN = ("received", "classified", "accepted", "dispatched", "handling", "handled", "verified",
        "returned", "reopened")
HEALTH_TTL_S = 10.0


@get("/api/cases", opt=scope("cases:read"), tags=["console"])
async def search_cases(
    state: State, request: Request[Any, Any, Any],
    status: Annotated[list[str] | None, Parameter(description="one or more statuses")] = None,
    category: str | None = None, division: str | None = None,
    text: Annotated[str | None, Parameter(max_length=200)] = None,
    overdue: bool = False, within: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50, cursor: str | None = None,
) -> dict[str, Any]:
    """The case queue (the event hub's search, as the caller); `overdue` keeps the open cases
    past their disposal deadline that are not handled yet."""
    params: dict[str, Any] = {"limit": 500 if overdue else limit}
    for key, value in (("category", category), ("division", division), ("text", text),
                       ("cursor", cursor), ("within", within)):
        if value:
            params[key] = value
    statuses = status or (list(OPEN) if overdue else None)
    if statuses:
        params["status"] = statuses
    page: dict[str, Any] = await upstreams(state).call("events", "GET", "/cases",
                                                       token=token_of(request), params=params)
    if overdue:
        now = datetime.now(UTC)
        page["items"] = [c for c in page["items"] if c.get("dispose_due")
                         and c["status"] not in DONE
                         and datetime.fromisoformat(c["dispose_due"]) < now][:limit]
    return page


@get("/api/cases/{case_id:int}", opt=scope("cases:read"), tags=["console"])
async def get_case(case_id: int, state: State, request: Request[Any, Any, Any]) -> Any:
    """A case with its reports and history; with its dispatch assignment when dispatch runs."""
    ups, token = upstreams(state), token_of(request)
    detail, assignment = await asyncio.gather(
        ups.call("events", "GET", f"/cases/{case_id}", token=token),
        _optional(ups.call("dispatch", "GET", f"/assignments/{case_id}", token=token)))
    detail["assignment"] = assignment
    return detail


async def _optional(call: Any) -> Any:
    try:
        return await call
    except Exception:  # dispatch absent, or nothing assigned yet: the case page still shows
        return None


@post("/api/cases/{case_id:int}/{action:str}", opt=scope("cases:act"), tags=["console"],
      status_code=200)
async def case_action(case_id: int, action: str, data: dict[str, Any], state: State,
                      request: Request[Any, Any, Any]) -> Any:
    """An action on a case, passed to the event hub as the caller: the center's classify,
    accept, reject, dispatch, merge, split, close, reopen (scope cases:dispatch); the unit's
    start, finish, return; verify and rework."""
    if action not in CASE_ACTIONS:
        raise ClientException(detail=f"unknown action {action!r}; one of {sorted(CASE_ACTIONS)}")
    if action in CENTER_ACTIONS:
        require_scope(current_principal(request), "cases:dispatch")
    return await upstreams(state).call("events", "POST", f"/cases/{case_id}/{action}",
                                       token=token_of(request), json=data)


# -- the person who handles it (dispatch) ----------------------------------------------------------


@get("/api/cases/{case_id:int}/staff", opt=scope("cases:act"), tags=["console"])
async def case_staff(case_id: int, state: State, request: Request[Any, Any, Any]
                     ) -> dict[str, Any]:
    """The on-duty field staff of the unit the case was dispatched to, nearest to the case
    first (those without a recent position last): whom to give it to."""
    ups, token = upstreams(state), token_of(request)
    assignment = await ups.call("dispatch", "GET", f"/assignments/{case_id}", token=token)
    people = await ups.call("dispatch", "GET", "/staff", token=token,
                            params={"unit": assignment["lead"], "on_duty": "true"})
    lon, lat = assignment.get("lon"), assignment.get("lat")
    for person in people:
        located = None not in (lon, lat, person.get("lon"), person.get("lat"))
        person["distance_m"] = round(distance_m(lon, lat, person["lon"], person["lat"])) \
            if located else None
    people.sort(key=lambda p: (p["distance_m"] is None, p["distance_m"] or 0, p["staff_id"]))
    return {"case_id": case_id, "unit": assignment["lead"], "state": assignment["state"],
            "staff_id": assignment.get("staff_id"), "lon": lon, "lat": lat, "items": people}


@post("/api/cases/{case_id:int}/assign", opt=scope("cases:act"), tags=["console"],
      status_code=201)
async def assign_staff(case_id: int, data: dict[str, Any], state: State,
                       request: Request[Any, Any, Any]) -> Any:
    """Give the dispatched case to a person of its unit (`staff_id`), or, without one, to the
    nearest on duty as dispatch finds them: the person's task on the small screen."""
    return await upstreams(state).call("dispatch", "POST", f"/assignments/{case_id}/assign",
                                       token=token_of(request), json=data)


# -- routing rules (dispatch) ------------------------------------------------------------------------


@get("/api/routing/rules", opt=scope("cases:dispatch"), tags=["console"])
async def list_rules(state: State, request: Request[Any, Any, Any]) -> Any:
    """Dispatch's routing rules (503 while dispatch is not deployed)."""
    return await upstreams(state).call("dispatch", "GET", "/rules", token=token_of(request))


@post("/api/routing/rules", opt=scope("cases:dispatch"), tags=["console"], status_code=201)
async def create_rule(data: dict[str, Any], state: State, request: Request[Any, Any, Any]
                      ) -> Any:
    return await upstreams(state).call("dispatch", "POST", "/rules", token=token_of(request),
                                       json=data)


@put("/api/routing/rules/{rule_id:int}", opt=scope("cases:dispatch"), tags=["console"])
async def update_rule(rule_id: int, data: dict[str, Any], state: State,
                      request: Request[Any, Any, Any]) -> Any:
    return await upstreams(state).call("dispatch", "PUT", f"/rules/{rule_id}",
                                       token=token_of(request), json=data)


@post("/api/routing/preview", opt=scope("cases:dispatch"), tags=["console"], status_code=200)
async def preview_rule(data: dict[str, Any], state: State, request: Request[Any, Any, Any]
                       ) -> Any:
    """Where a case of this category, at this place (district or street) and time, would go:
    with the rules in force, and with the edited rule (`rule`, replacing `rule_id` when it
    has one) before it is saved. Dispatch evaluates its own rules (its dry run); until it
    offers one, a 503 says so."""
    return await upstreams(state).call("dispatch", "POST", "/rules/preview",
                                       token=token_of(request), json=data)


# -- data stewards --------------------------------------------------------------------------------------


@get("/api/datasets", opt=scope("ingest:read"), tags=["data"])
async def list_datasets(state: State, request: Request[Any, Any, Any]) -> Any:
    """Dataset registrations the caller may see (a department: its own)."""
    return await upstreams(state).call("ingestion", "GET", "/datasets", token=token_of(request))


@get("/api/datasets/{name:str}/dead-letters", opt=scope("ingest:read"), tags=["data"])
async def dead_letters(name: str, state: State, request: Request[Any, Any, Any],
                       after_id: Annotated[int, Parameter(ge=0)] = 0,
                       limit: Annotated[int, Parameter(ge=1, le=1000)] = 100) -> Any:
    """A dataset's rejected records with their reasons, oldest first."""
    return await upstreams(state).call(
        "ingestion", "GET", f"/datasets/{name}/dead-letters", token=token_of(request),
        params={"after_id": after_id, "limit": limit})


@get("/api/contribution", opt=scope("ingest:read"), tags=["data"])
async def contribution(state: State, request: Request[Any, Any, Any]) -> Any:
    """Data contribution per department and dataset over the last day."""
    return await upstreams(state).call("ingestion", "GET", "/contribution",
                                       token=token_of(request))


@get("/api/services", opt=PUBLIC, tags=["session"])
async def services(state: State) -> dict[str, bool]:
    """Which of the other services answer (the screens hide what an absent one offers)."""
    cached = state.get("health_cache")
    if cached is not None and time.monotonic() - cached[0] < HEALTH_TTL_S:
        status: dict[str, bool] = cached[1]
        return status
    ups = upstreams(state)

    async def up(name: str) -> bool:
        try:
            response = await ups.http.get(ups.urls[name].rstrip("/") + "/healthz", timeout=1.5)
            return bool(response.status_code == 200)
        except httpx.HTTPError:
            return False

    names = [n for n in ups.urls if n != "identity"]
    status = dict(zip(names, await asyncio.gather(*(up(n) for n in names)), strict=True))
    state.health_cache = (time.monotonic(), status)
    return status


ROUTES: list[ControllerRouterHandler] = [search_cases, get_case, case_staff, assign_staff,
                                         case_action, list_rules, create_rule, update_rule,
                                         preview_rule, list_datasets, dead_letters,
                                         contribution, services]
