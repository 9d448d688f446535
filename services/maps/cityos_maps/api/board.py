"""The big screen's data: themes, their figures and charts, the live feed, layer data, box
select (wartime mode) and task issuing."""

import asyncio
from datetime import timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.types import ControllerRouterHandler
from msgspec import Meta

from cityos_kit.auth import current_principal, scope
from cityos_kit.telemetry import logger
from cityos_maps import board as boards
from cityos_maps.api.common import token_of, upstreams
from cityos_maps.geo import BadPolygon, contains, grid_counts
from cityos_maps.live import RESYNC, Live
from cityos_maps.themes import Layer, Theme, summary

log = logger("cityos.maps.board")

READ = scope("maps:read")
KIND_ORDER = ("incident", "staff", "mobile", "entity", "media")
KEEPALIVE_S = 15.0


def _live(state: State) -> Live:
    live: Live = state.live
    return live


def _theme(state: State, theme_id: str) -> Theme:
    themes: dict[str, Theme] = state.themes
    if theme_id not in themes:
        raise NotFoundException(detail=f"no theme {theme_id!r}; one of {list(themes)}")
    return themes[theme_id]


def context(state: State, token: str | None = None) -> boards.Context:
    live = _live(state)
    return boards.Context(cases=live.cases, vehicles=live.vehicles, sensors=live.sensors,
                          staff=live.staff,
                          upstreams=upstreams(state), units=state.units,
                          departments=state.departments, now=live.now(),
                          midnight=live.midnight(), token=token)


@get("/api/themes", opt=READ, tags=["themes"], sync_to_thread=False)
def list_themes(state: State) -> list[dict[str, Any]]:
    """The overall situation map and the thematic maps, in switcher order."""
    themes: dict[str, Theme] = state.themes
    return [summary(t) for t in themes.values()]


@get("/api/themes/{theme_id:str}", opt=READ, tags=["themes"], sync_to_thread=False)
def get_theme(theme_id: str, state: State) -> Theme:
    """One theme's configuration: layers, filters, figures, charts."""
    return _theme(state, theme_id)


@get("/api/board/{theme_id:str}", opt=READ, tags=["themes"])
async def get_board(theme_id: str, state: State, request: Request[Any, Any, Any]
                    ) -> dict[str, Any]:
    """A theme's key figures and charts now (the live feed pushes them as they change)."""
    board: dict[str, Any] = await boards.compute(context(state, token_of(request)),
                                                 _theme(state, theme_id))
    return board


@get("/api/live", opt=READ, tags=["live"])
async def live_feed(state: State, request: Request[Any, Any, Any],
                    theme: Annotated[str, Parameter(max_length=64)] = "overall"
                    ) -> ServerSentEvent:
    """Server-sent events for one screen: `vehicles`, `sensors` and `cases` (a full snapshot
    first, then what changed, every push interval), and `board` (the theme's figures and
    charts)."""
    chosen = _theme(state, theme)
    live = _live(state)
    token = token_of(request)
    first_board = msgspec.json.encode(await boards.compute(context(state, token), chosen))

    async def events() -> Any:
        async with live.screen(chosen.id) as screen:
            yield ServerSentEventMessage(event="hello", data=msgspec.json.encode(
                {"theme": chosen.id, "push_interval_s": live.settings.push_interval_s}).decode())
            for event, data in [*live.snapshot(), ("board", first_board)]:
                yield ServerSentEventMessage(event=event, data=data.decode())
            while True:
                try:
                    event, data = await _next(screen.queue)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                if (event, data) == RESYNC:
                    for ev, payload in live.snapshot():
                        yield ServerSentEventMessage(event=ev, data=payload.decode())
                    continue
                yield ServerSentEventMessage(event=event, data=data.decode())

    return ServerSentEvent(events(), headers={"X-Accel-Buffering": "no"})


async def _next(queue: "asyncio.Queue[tuple[str, bytes]]") -> tuple[str, bytes]:
    item: tuple[str, bytes] = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
    return item


# -- layers ---------------------------------------------------------------------------------------


def _layer(theme: Theme, layer_id: str) -> Layer:
    for layer in theme.layers:
        if layer.id == layer_id:
            return layer
    raise NotFoundException(detail=f"theme {theme.id} has no layer {layer_id!r}")


@get("/api/themes/{theme_id:str}/layers/{layer_id:str}", opt=READ, tags=["themes"])
async def layer_data(theme_id: str, layer_id: str, state: State,
                     request: Request[Any, Any, Any]) -> Response[Any]:
    """The data of a layer that is not live: roads, entities, stay points, density cells,
    case hotspots (GeoJSON, or cells as `{lon, lat, count}`)."""
    layer = _layer(_theme(state, theme_id), layer_id)
    token = token_of(request)
    ups = upstreams(state)
    live = _live(state)
    if layer.kind == "hotspots":
        rows = live.cases.select(layer.cases, live.now(), live.midnight())
        cells = grid_counts(((r.lon, r.lat) for r in rows if r.lon is not None
                             and r.lat is not None), layer.cell_m)
        return Response({"cells": cells})
    if layer.kind in ("roads", "entities"):
        params = {"limit": 10000} | ({"category": layer.category} if layer.category else {})
        data = await ups.shared("spatiotemporal", f"/datasets/{layer.dataset}/entities", params,
                                token, ttl=300 if layer.kind == "roads" else None)
        return Response(data, media_type="application/geo+json")
    now = live.now()
    start = now - timedelta(minutes=layer.minutes)
    if layer.kind == "staypoints":
        data = await ups.shared("spatiotemporal", f"/datasets/{layer.dataset}/staypoints",
                                {"start": start.isoformat(timespec="seconds"),
                                 "end": now.isoformat(timespec="seconds"),
                                 "include_open": "true"}, token)
        return Response(data, media_type="application/geo+json")
    if layer.kind == "density":
        # Round the window to the minute so every screen shares one cached answer.
        end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        cells = []
        # The engine caps one query's area (1,000 km²): a city is asked for in strips.
        for strip in _strips(state.bbox, parts=4):
            body = {"schema": "cityos.stquery.cell_count_query.v1", "dataset": layer.dataset,
                    "start": (end - timedelta(minutes=layer.minutes)).isoformat(),
                    "end": end.isoformat(), "bbox": strip, "cell_m": layer.cell_m,
                    "bucket_s": max(60, layer.minutes * 60)}
            data = await ups.shared("spatiotemporal", "/query/cells", token=token, body=body)
            cells += [{"lon": _centre(f["geometry"])[0], "lat": _centre(f["geometry"])[1],
                       "count": f["properties"]["count"], "cell_m": layer.cell_m}
                      for f in (data or {}).get("features", [])]
        return Response({"cells": cells})
    raise ClientException(detail=f"layer {layer_id} ({layer.kind}) is live: it comes over "
                                 "/api/live, or from /api/city")


def _strips(bbox: list[float], parts: int) -> list[list[float]]:
    west, south, east, north = bbox
    step = (east - west) / parts
    return [[west + i * step, south, west + (i + 1) * step, north] for i in range(parts)]


def _centre(geometry: dict[str, Any]) -> tuple[float, float]:
    ring = geometry["coordinates"][0]
    xs, ys = [p[0] for p in ring[:-1]], [p[1] for p in ring[:-1]]
    return round(sum(xs) / len(xs), 5), round(sum(ys) / len(ys), 5)


# -- wartime mode -----------------------------------------------------------------------------------


class Selection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    polygon: dict[str, Any]
    limit_per_group: Annotated[int, Meta(ge=1, le=2000)] = 200


def _item(kind: str, dataset: str, id_: str, lon: float | None, lat: float | None,
          **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "dataset": dataset, "id": id_, "lon": lon, "lat": lat, **extra}


@post("/api/select", opt=READ, tags=["wartime"], status_code=200)
async def box_select(data: Selection, state: State, request: Request[Any, Any, Any]
                     ) -> dict[str, Any]:
    """Everything inside a drawn polygon, grouped: open cases by category group, field staff
    on duty by unit, live vehicles, and what the spatio-temporal engine stores there
    (entities, resources, media)."""
    try:
        inside = contains(data.polygon)
    except BadPolygon as exc:
        raise ClientException(detail=str(exc)) from exc
    live = _live(state)
    now = live.now()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in live.cases.cases.values():
        if row.open and inside(row.lon, row.lat):
            view = live.cases.view(row, now)
            extra = {k: v for k, v in view.items() if k not in ("id", "lon", "lat")}
            groups.setdefault(("incident", f"cases/{view['group'] or '未分类'}"), []).append(
                _item("incident", "cases", str(row.case_id), row.lon, row.lat, **extra))
    for p in live.vehicles.inside(inside):
        groups.setdefault(("mobile", p.dataset), []).append(
            _item("mobile", p.dataset, p.subject, p.lon, p.lat, speed=p.speed,
                  ts=p.ts))
    # Field staff on duty, by unit: the people a wartime task can be given to.
    people = live.staff.inside(inside)
    names = await _staff_names(state, request) if people else {}
    for p in people:
        groups.setdefault(("staff", p.unit or "—"), []).append(
            _item("staff", p.dataset, p.subject, p.lon, p.lat, unit=p.unit, ts=p.ts,
                  name=names.get(p.subject)))
    errors: list[str] = []
    try:
        stored = await upstreams(state).call(
            "spatiotemporal", "POST", "/query/box", token=token_of(request),
            json={"schema": "cityos.stquery.box_query.v1", "polygon": data.polygon,
                  "limit_per_group": data.limit_per_group})
    except Exception as exc:  # the live part still answers when the engine cannot
        errors.append(f"spatiotemporal: {getattr(exc, 'detail', exc)}")
        stored = {"features": []}
    for f in stored.get("features", []):
        props = f["properties"]
        if props["kind"] == "mobile" and (props["dataset"] in live.vehicles.datasets
                                          or live.staff.wants(props["dataset"])):
            continue  # already listed from the live positions (off-duty staff: not at all)
        if props["dataset"] == live.settings.roads_dataset:
            continue  # the base map, not a resource
        lon, lat = _point(f.get("geometry"))
        groups.setdefault((props["kind"], props["group"]), []).append(_item(
            props["kind"], props["dataset"], props["id"], lon, lat, name=props.get("name"),
            category=props.get("category"), attrs=props.get("attrs")))
    answer = [{"kind": kind, "group": group, "count": len(items),
               "items": items[: data.limit_per_group]}
              for (kind, group), items in sorted(groups.items(), key=lambda kv: (
                  KIND_ORDER.index(kv[0][0]) if kv[0][0] in KIND_ORDER else 9, kv[0][1]))]
    return {"groups": answer, "total": sum(g["count"] for g in answer), "errors": errors}


async def _staff_names(state: State, request: Request[Any, Any, Any]) -> dict[str, str]:
    """Field staff's names by id, from dispatch (positions carry ids only), as the caller: a
    unit sees its own people. Empty when the caller may not list staff (the list needs
    `cases:read`) or dispatch is not there: the ids stand in."""
    if not current_principal(request).has_scope("cases:read"):
        return {}
    try:
        people = await upstreams(state).call("dispatch", "GET", "/staff", token=token_of(request),
                                             params={"on_duty": "true", "limit": 5000})
    except Exception as exc:  # dispatch absent or refusing: the screen still shows the people
        log.warning("staff_names_unavailable", error=str(exc))
        return {}
    return {p["staff_id"]: p["name"] for p in people if p.get("name")}


@get("/api/staff/names", opt=READ, tags=["themes"])
async def staff_names(state: State, request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Names of the field staff on duty (`names`: id -> name) for the staff layer's markers;
    empty for a caller who may not list staff."""
    return {"names": await _staff_names(state, request)}


def _point(geometry: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if not geometry:
        return None, None
    if geometry["type"] == "Point":
        return geometry["coordinates"][0], geometry["coordinates"][1]
    coords = geometry["coordinates"]
    while isinstance(coords[0], list):
        coords = coords[0]
    return coords[0], coords[1]


ROUTES: list[ControllerRouterHandler] = [list_themes, get_theme, get_board, live_feed, layer_data,
                                         box_select, staff_names]
