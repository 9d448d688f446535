"""Figures and charts of a theme, computed from the live state and the other services.

Each metric is a function of the live state (cases, vehicles, sensors) or of another service's
answer (review, ingestion, spatio-temporal), named in the theme files. Charts come out in one
neutral shape the web application turns into ECharts options:

    {"kind": "bar", "labels": [{"zh": .., "en": ..}], "series": [{"name": .., "values": [..]}],
     "threshold": 75.0}
"""

import statistics
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cityos_maps.cases import CaseBoard, CaseRow
from cityos_maps.positions import Positions
from cityos_maps.themes import CaseFilter, Chart, Figure, Text, Theme
from cityos_maps.upstream import Upstreams

STATUS_TEXT: dict[str, Text] = {
    "received": Text("待受理", "Received"), "classified": Text("已分类", "Classified"),
    "accepted": Text("已受理", "Accepted"), "dispatched": Text("已派遣", "Dispatched"),
    "handling": Text("处置中", "Handling"), "handled": Text("已处置", "Handled"),
    "verified": Text("已核查", "Verified"), "closed": Text("已结案", "Closed"),
    "merged": Text("已合并", "Merged"), "returned": Text("已退回", "Returned"),
    "rejected": Text("不予受理", "Rejected"), "reopened": Text("已重启", "Reopened"),
}
# The national digital-urban-management groups (categories.json names them in Chinese only).
GROUP_EN = {
    "市容环境": "City appearance", "街面秩序": "Street order", "公用设施": "Public facilities",
    "道路交通": "Roads and traffic", "施工管理": "Construction", "环境保护": "Environment",
    "水务": "Water", "安全隐患": "Safety hazards", "园林绿化": "Greenery",
    "民生诉求": "Livelihood requests", "市场监管": "Market regulation",
    "社会治理": "Social governance", "卫生健康": "Health", "未分类": "Unclassified",
}
SPEED_CLASSES = ((5.0, Text("停驶", "Stopped")), (20.0, Text("缓行", "Slow")),
                 (40.0, Text("中速", "Moderate")), (60.0, Text("畅行", "Free-flowing")),
                 (float("inf"), Text("高速", "Fast")))


@dataclass
class Context:
    cases: CaseBoard
    vehicles: Positions
    sensors: Positions
    staff: Positions
    upstreams: Upstreams
    units: dict[str, dict[str, Any]]
    departments: dict[str, dict[str, Any]]
    now: datetime
    midnight: datetime
    token: str | None = None  # the person's, when there is no service client


Metric = Callable[[Context, dict[str, Any]], Awaitable[Any]]
METRICS: dict[str, Metric] = {}


def metric(name: str) -> Callable[[Metric], Metric]:
    def register(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn
    return register


def _where(params: dict[str, Any]) -> CaseFilter | None:
    raw = params.get("where")
    return msgspec.convert(raw, CaseFilter) if raw else None


def _rows(ctx: Context, params: dict[str, Any]) -> list[CaseRow]:
    return list(ctx.cases.select(_where(params), ctx.now, ctx.midnight))


def _text(value: Text | str) -> dict[str, str]:
    return msgspec.to_builtins(value) if isinstance(value, Text) else {"zh": value, "en": value}


def _label(ctx: Context, key: str, value: str) -> dict[str, str]:
    if key == "status":
        return _text(STATUS_TEXT.get(value, Text(value, value)))
    if key == "group":
        return {"zh": value, "en": GROUP_EN.get(value, value)}
    if key == "category":
        info = ctx.cases.categories.get(value)
        return {"zh": info.name, "en": info.name_en} if info else {"zh": "未分类", "en": "Unclassified"}
    if key == "unit":
        unit = ctx.units.get(value)
        return {"zh": unit["name"], "en": unit.get("name_en", unit["name"])} if unit else \
            {"zh": value or "指挥中心", "en": value or "Command center"}
    return {"zh": value or "—", "en": value or "—"}


def _series(labels: list[dict[str, str]], values: list[Any], name: Text | None = None,
            kind: str = "bar", **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "labels": labels,
            "series": [{"name": _text(name) if name else None, "values": values}], **extra}


# -- cases ----------------------------------------------------------------------------------


@metric("cases.count")
async def cases_count(ctx: Context, params: dict[str, Any]) -> int:
    return len(_rows(ctx, params))


@metric("cases.on_time_rate")
async def cases_on_time_rate(ctx: Context, params: dict[str, Any]) -> float | None:
    """Share (%) of handled cases handled within the disposal deadline."""
    judged = [ok for row in _rows(ctx, params) if (ok := ctx.cases.on_time(row)) is not None]
    return round(100.0 * sum(judged) / len(judged), 1) if judged else None


@metric("cases.by")
async def cases_by(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    key = str(params.get("key", "status"))
    counts = ctx.cases.count_by(_rows(ctx, params), key)
    top = counts.most_common(int(params.get("top", 12)))
    return _series([_label(ctx, key, k) for k, _ in top], [n for _, n in top],
                   Text("案件数", "Cases"))


@metric("cases.by_hour")
async def cases_by_hour(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Cases received per hour of today (local time)."""
    counts = Counter[int]()
    tz = ctx.midnight.tzinfo
    for row in _rows(ctx, params):
        if row.received_at is not None and row.received_at >= ctx.midnight:
            counts[row.received_at.astimezone(tz).hour] += 1
    hours = range(ctx.now.astimezone(tz).hour + 1)
    return _series([{"zh": f"{h}时", "en": f"{h}:00"} for h in hours], [counts[h] for h in hours],
                   Text("新增案件", "New cases"), kind="line")


def _unit_ranking(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """On-time rate per handling unit from the case stream (when review is not there)."""
    judged: dict[str, list[bool]] = {}
    for row in _rows(ctx, params):
        ok = ctx.cases.on_time(row)
        if ok is not None and row.unit:
            judged.setdefault(row.unit, []).append(ok)
    rates = sorted(((100.0 * sum(v) / len(v), len(v), u) for u, v in judged.items()),
                   key=lambda t: (-t[0], -t[1], t[2]))[: int(params.get("top", 10))]
    return _series([_label(ctx, "unit", u) for _, _, u in rates], [round(r, 1) for r, _, _ in rates],
                   Text("按时处置率 %", "On-time %"), kind="rank", source="cases")


# -- vehicles, field staff and sensors ---------------------------------------------------------


@metric("staff.on_duty")
async def staff_on_duty(ctx: Context, params: dict[str, Any]) -> int:
    """Field staff on duty with a recent position (of one department's units: `department`)."""
    department = params.get("department")
    return sum(1 for p in ctx.staff.all()
               if department is None or (p.unit or "").split("-", 1)[0] == department)


def _vehicles(ctx: Context, params: dict[str, Any]) -> list[Any]:
    datasets = params.get("datasets")
    rows = ctx.vehicles.all()
    return [p for p in rows if p.dataset in datasets] if datasets else rows


@metric("vehicles.count")
async def vehicles_count(ctx: Context, params: dict[str, Any]) -> int:
    rows = _vehicles(ctx, params)
    if params.get("moving"):
        return sum(1 for p in rows if (p.speed or 0.0) >= 5.0)
    return len(rows)


@metric("vehicles.avg_speed")
async def vehicles_avg_speed(ctx: Context, params: dict[str, Any]) -> float | None:
    speeds = [p.speed for p in _vehicles(ctx, params) if p.speed is not None]
    return round(statistics.fmean(speeds), 1) if speeds else None


@metric("vehicles.speed_classes")
async def vehicles_speed_classes(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    counts = [0] * len(SPEED_CLASSES)
    for p in _vehicles(ctx, params):
        speed = p.speed or 0.0
        counts[next(i for i, (limit, _) in enumerate(SPEED_CLASSES) if speed < limit)] += 1
    return _series([_text(t) for _, t in SPEED_CLASSES], counts, Text("车辆", "Vehicles"))


@metric("sensors.count")
async def sensors_count(ctx: Context, params: dict[str, Any]) -> int:
    above = params.get("above")
    rows = ctx.sensors.all()
    return sum(1 for p in rows if above is None or (p.value or 0.0) > float(above))


@metric("sensors.max")
async def sensors_max(ctx: Context, params: dict[str, Any]) -> float | None:
    values = [p.value for p in ctx.sensors.all() if p.value is not None]
    return round(max(values), 1) if values else None


@metric("sensors.readings")
async def sensors_readings(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The highest current readings, against the threshold line."""
    rows = sorted((p for p in ctx.sensors.all() if p.value is not None),
                  key=lambda p: -(p.value or 0.0))[: int(params.get("top", 12))]
    return _series([{"zh": p.subject, "en": p.subject} for p in rows],
                   [round(p.value or 0.0, 1) for p in rows], Text("读数", "Reading"),
                   threshold=params.get("threshold"))


# -- other services ------------------------------------------------------------------------------


@metric("review.ranking")
async def review_ranking(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The efficiency review's unit ranking; the case stream's on-time rates without it."""
    answer = await ctx.upstreams.try_shared("review", "/review/ranking", {"level": "unit"},
                                            ctx.token)
    entries = [e for e in (answer or {}).get("entries", []) if e.get("score") is not None]
    if not entries:
        return _unit_ranking(ctx, params)
    top = entries[: int(params.get("top", 10))]
    return _series([_label(ctx, "unit", str(e["name"])) for e in top],
                   [round(float(e["score"]), 1) for e in top],
                   Text("综合得分", "Score"), kind="rank", source="review")


@metric("ingest.contribution")
async def ingest_contribution(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """Records accepted per department over the last 24 h (data contribution)."""
    rows = await ctx.upstreams.try_shared("ingestion", "/contribution", None, ctx.token) or []
    accepted: Counter[str] = Counter()
    for r in rows:
        accepted[r["department"]] += int(r["accepted"])
    top = accepted.most_common(int(params.get("top", 10)))
    labels = [{"zh": ctx.departments.get(d, {}).get("name", d),
               "en": ctx.departments.get(d, {}).get("name_en", d)} for d, _ in top]
    return _series(labels, [n for _, n in top], Text("有效记录", "Records accepted"))


@metric("ingest.validity")
async def ingest_validity(ctx: Context, params: dict[str, Any]) -> float | None:
    rows = await ctx.upstreams.try_shared("ingestion", "/contribution", None, ctx.token) or []
    received = sum(int(r["received"]) for r in rows)
    return round(100.0 * sum(int(r["accepted"]) for r in rows) / received, 1) if received else None


async def _entities(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    dataset = str(params.get("dataset", ""))
    query = {"limit": 10000} | ({"category": params["category"]} if params.get("category") else {})
    answer = await ctx.upstreams.try_shared("spatiotemporal", f"/datasets/{dataset}/entities",
                                            query, ctx.token)
    return list((answer or {}).get("features", []))


def _attr(feature: dict[str, Any], name: str) -> str:
    props = feature.get("properties") or {}
    value = props.get(name, (props.get("attrs") or {}).get(name))
    return str(value) if value is not None else "—"


@metric("entities.count")
async def entities_count(ctx: Context, params: dict[str, Any]) -> int | None:
    features = await _entities(ctx, params)
    if "attr" in params:
        return sum(1 for f in features if _attr(f, params["attr"]) == str(params.get("value")))
    return len(features)


@metric("entities.by")
async def entities_by(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    counts = Counter(_attr(f, str(params.get("attr", "category"))) for f in
                     await _entities(ctx, params))
    names: dict[str, Any] = params.get("names", {})
    labels = [_text(msgspec.convert(names[k], Text)) if k in names else {"zh": k, "en": k}
              for k in counts]
    return _series(labels, list(counts.values()), Text("数量", "Count"))


@metric("staypoints.count")
async def staypoints_count(ctx: Context, params: dict[str, Any]) -> int | None:
    dataset = str(params.get("dataset", "vehicle_gps"))
    start = ctx.now - timedelta(hours=float(params.get("hours", 24)))
    answer = await ctx.upstreams.try_shared(
        "spatiotemporal", f"/datasets/{dataset}/staypoints",
        {"start": start.isoformat(), "end": ctx.now.isoformat()}, ctx.token)
    return None if answer is None else len(answer.get("features", []))


# -- one theme's board ---------------------------------------------------------------------------


async def _figure(ctx: Context, figure: Figure) -> dict[str, Any]:
    value = await METRICS[figure.metric](ctx, figure.params)
    return {"id": figure.id, "value": value}


async def _chart(ctx: Context, chart: Chart) -> dict[str, Any]:
    data = await METRICS[chart.metric](ctx, chart.params)
    return {"id": chart.id, **(data if isinstance(data, dict) else {"value": data})}


async def compute(ctx: Context, theme: Theme) -> dict[str, Any]:
    return {"theme": theme.id, "at": ctx.now.astimezone(UTC).isoformat(),
            "figures": [await _figure(ctx, f) for f in theme.figures],
            "charts": [await _chart(ctx, c) for c in theme.charts]}
