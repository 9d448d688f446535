"""Wartime mode's orders: declare an emergency over the drawn polygon and issue a task to the
resources (field staff) chosen in the box selection. Dispatch owns emergencies and tasks; the
screen only asks it, as the operator."""

from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler
from msgspec import Meta

from cityos_kit.auth import scope
from cityos_maps.api.common import token_of, upstreams

StaffId = Annotated[str, Meta(min_length=1, max_length=200)]


class TaskOrder(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, Meta(min_length=1, max_length=2000)]
    staff_ids: Annotated[list[StaffId], Meta(min_length=1, max_length=500)]
    emergency_id: int | None = None
    # Without an emergency: declared now over this polygon, with this name.
    polygon: dict[str, Any] | None = None
    name: Annotated[str, Meta(max_length=200)] = "战时指挥 Wartime command"
    case_id: int | None = None


@post("/api/tasks", opt=scope("cases:dispatch"), tags=["wartime"], status_code=201)
async def issue_task(data: TaskOrder, state: State, request: Request[Any, Any, Any]
                     ) -> dict[str, Any]:
    """Issue a task to field staff inside the drawn area (declaring the emergency first when
    there is none yet); 503 while the dispatch service is not deployed."""
    ups, token = upstreams(state), token_of(request)
    emergency_id = data.emergency_id
    emergency = None
    if emergency_id is None:
        if data.polygon is None:
            raise msgspec.ValidationError("give emergency_id or the polygon to declare one over")
        emergency = await ups.call("dispatch", "POST", "/emergencies", token=token,
                                   json={"name": data.name, "polygon": data.polygon})
        emergency_id = int(emergency["emergency_id"])
    body: dict[str, Any] = {"staff_ids": data.staff_ids, "text": data.text}
    if data.case_id is not None:
        body["case_id"] = data.case_id
    tasks = await ups.call("dispatch", "POST", f"/emergencies/{emergency_id}/tasks",
                           token=token, json=body)
    return {"emergency_id": emergency_id, "emergency": emergency, "tasks": tasks}


ROUTES: list[ControllerRouterHandler] = [issue_task]
