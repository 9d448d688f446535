"""Field staff (small screen): my tasks, a task, accept / progress / handled with a photo
reference, and a new incident at my location ("the street blows the whistle").

With the dispatch service, tasks are the person's own assignments and the steps go through
dispatch (deadlines, evidence). Without it, a worker's tasks are the cases the event hub lets
their unit handle, and the steps are the hub's start / finish (the evidence in the reason).
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler
from msgspec import Meta

from cityos_kit.auth import current_principal, scope
from cityos_maps.api.common import token_of, upstreams
from cityos_maps.upstream import Unavailable, UpstreamError

ACTIVE = ("dispatched", "handling", "handled", "returned")
Uri = Annotated[str, Meta(min_length=1, max_length=2000)]
# Field step -> (dispatch's unit action, the event hub's action without dispatch).
STEPS = {"accept": ("accept", "start"), "progress": ("progress", None),
         "handled": ("handled", "finish")}


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    note: Annotated[str, Meta(max_length=2000)] = ""
    evidence: Annotated[list[Uri], Meta(max_length=20)] = msgspec.field(default_factory=list)


class StreetReport(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=4000)]
    lon: Annotated[float, Meta(ge=-180, le=180)]
    lat: Annotated[float, Meta(ge=-90, le=90)]
    category: Annotated[str, Meta(pattern=r"^\d{4}$")] | None = None
    media: Annotated[list[Uri], Meta(max_length=20)] = msgspec.field(default_factory=list)
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=200)] | None = None


def _from_case(case: dict[str, Any]) -> dict[str, Any]:
    loc = case.get("location") or {}
    return {"case_id": case["case_id"], "title": case.get("title", ""),
            "status": case["status"], "category": case.get("category"),
            "lon": loc.get("lon"), "lat": loc.get("lat"), "address": loc.get("address"),
            "street_name": loc.get("street_name"), "dispose_due": case.get("dispose_due"),
            "unit": case.get("handling_unit"), "source": "events"}


async def _dispatch(call: Any) -> Any:
    """A dispatch answer, or None when dispatch is absent or does not know the person."""
    try:
        return await call
    except Unavailable:
        return None
    except UpstreamError as exc:
        if exc.status_code in (403, 404):
            return None
        raise


@get("/api/field/tasks", opt=scope("cases:act"), tags=["field"])
async def my_tasks(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The signed-in worker's open tasks, nearest deadline first: the cases their unit handles
    that are not given to another person (dispatch's staff assignment), and their own
    emergency orders."""
    ups, token = upstreams(state), token_of(request)
    principal = current_principal(request)
    page = await ups.call("events", "GET", "/cases", token=token,
                          params={"status": list(ACTIVE), "limit": 100})
    # The hub shows a unit what it handles; a person's list is what their unit was sent.
    cases = [c for c in page["items"]
             if principal.sees_all_units() or c.get("handling_unit") == principal.unit]
    orders = await _dispatch(ups.call("dispatch", "GET", "/staff/me/tasks", token=token))
    assignments = await _dispatch(ups.call("dispatch", "GET", "/assignments", token=token,
                                           params={"limit": 1000}))
    if assignments is not None:
        taken = {a["case_id"]: a.get("staff_id") for a in assignments}
        cases = [c for c in cases if taken.get(c["case_id"]) in (None, principal.sub)]
    items = [_from_case(c) for c in cases]
    for order in orders or []:
        if order.get("case_id") is None:
            items.append({"task_id": order["task_id"], "case_id": None, "title": order["text"],
                          "status": "dispatched", "category": None, "lon": order.get("lon"),
                          "lat": order.get("lat"), "dispose_due": order.get("dispose_due"),
                          "emergency_id": order.get("emergency_id"), "source": "dispatch"})
    items.sort(key=lambda t: t["dispose_due"] or "9999")
    return {"items": items, "dispatch": orders is not None}


@post("/api/field/orders/{task_id:int}/done", opt=scope("cases:act"), tags=["field"],
      status_code=200)
async def order_done(task_id: int, state: State, request: Request[Any, Any, Any]) -> Any:
    """Mark an emergency order done (dispatch)."""
    return await upstreams(state).call("dispatch", "POST", f"/staff/me/tasks/{task_id}/done",
                                       token=token_of(request))


@get("/api/field/tasks/{case_id:int}", opt=scope("cases:read"), tags=["field"])
async def task_detail(case_id: int, state: State, request: Request[Any, Any, Any]) -> Any:
    """A task's case: what was reported, where, and its history."""
    return await upstreams(state).call("events", "GET", f"/cases/{case_id}",
                                       token=token_of(request))


@post("/api/field/tasks/{case_id:int}/{step:str}", opt=scope("cases:act"), tags=["field"],
      status_code=200)
async def task_step(case_id: int, step: Literal["accept", "progress", "handled"], data: Step,
                    state: State, request: Request[Any, Any, Any]) -> Any:
    """Accept the task, report progress, or report it handled with evidence (photo refs)."""
    ups, token = upstreams(state), token_of(request)
    unit_action, hub_action = STEPS[step]
    answer = await _dispatch(ups.call(
        "dispatch", "POST", f"/assignments/{case_id}/{unit_action}", token=token,
        json={"reason": data.note, "evidence": data.evidence}))
    if answer is not None:
        return answer
    if hub_action is None:
        raise Unavailable(detail="progress reports need the dispatch service",
                          extra={"service": "dispatch"})
    reason = data.note + "".join(f"\n照片 photo: {uri}" for uri in data.evidence)
    return await ups.call("events", "POST", f"/cases/{case_id}/{hub_action}", token=token,
                          json={"reason": reason.strip()})


@post("/api/field/reports", opt=scope("cases:report"), tags=["field"], status_code=201)
async def street_report(data: StreetReport, state: State, request: Request[Any, Any, Any]
                        ) -> Any:
    """A new incident where the worker stands, into the event hub (channel grid_app)."""
    principal = current_principal(request)
    body = {"schema": "cityos.report.v1", "channel": "grid_app", "text": data.text,
            "reported_at": datetime.now(UTC).isoformat(), "lon": data.lon, "lat": data.lat,
            "media": data.media, "reporter": {"account": principal.sub,
                                              "name": principal.name or None},
            "idempotency_key": data.idempotency_key or f"maps-{uuid.uuid4().hex}"}
    if data.category:
        body["category"] = data.category
    return await upstreams(state).call("events", "POST", "/reports", token=token_of(request),
                                       json=body)


ROUTES: list[ControllerRouterHandler] = [my_tasks, order_done, task_detail, task_step,
                                         street_report]
