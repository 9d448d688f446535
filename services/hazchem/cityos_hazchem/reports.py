"""Warnings as event-hub reports: channel `system` on the `reports.system` stream.

Category 0803 "危化品异常" (in the demo city's categories.json, routed to YJJ). The idempotency
key names the kind, the subject and the warning's start (for a place warning, the start of its
place period), so re-computing a window does not post it twice. The `source_ref` names only the
kind and the subject (the vehicle, or the enterprise or suspected site of a place warning): a
warning that recurs later is a new report with the same `source_ref`, which the hub adds to that
warning's case while the case is open.
"""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cityos_contracts.cases import ReportIn
from cityos_hazchem import rules
from cityos_hazchem.rules import Warning

CATEGORY = "0803"  # 危化品异常
MAX_DETAIL = 1500
TEXT = {
    rules.CLOSED_STAY: "危化品车辆在停产/关停企业停留",
    rules.NOTHING_STAY: "危化品车辆在无登记企业及POI处停留（疑似黑作坊）",
    rules.FATIGUE: "危化品车辆疲劳驾驶（连续驾驶超时未休息）",
    rules.NIGHT: "危化品车辆夜间禁行时段行驶",
    rules.NON_OPERATING: "非营运危化品车辆出车",
    rules.ROUTE_DEVIATION: "危化品车辆偏离申报路线",
    rules.LICENCE: "危化品企业许可证过期或登记信息异常仍接收危化品车辆",
    rules.BLACK_SITE: "疑似危化品黑作坊（无登记企业处车辆反复停留）",
}


LOCAL = ZoneInfo(rules.Thresholds().timezone)


def _local(t: float, tz: ZoneInfo) -> str:
    """Local wall time for the people reading the case (the event hub keeps the exact times)."""
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M")


def source_ref(w: Warning) -> str:
    """Stable per (kind, subject): the hub's key for 'the same warning again'."""
    return f"hazchem/{w.kind}/{rules.subject(w)}"


def idempotency_key(w: Warning) -> str:
    """The kind, the subject and the episode's time: the same warning has it in every window."""
    return f"hazchem:{w.kind}:{rules.subject(w)}:{rules.episode_time(w)}"


def _intercept(ev: dict[str, Any]) -> str:
    """The interception summary of a route deviation (the area itself stays in the evidence)."""
    parts = []
    reach = ev.get("reachable") or {}
    if "intersections" in reach:
        parts.append(f"{reach['minutes']:g}分钟可达范围边缘路口 {len(reach['intersections'])} 个")
    elif "error" in reach:  # the people following the case see why there is no area
        parts.append(f"可达范围未能计算（{str(reach['error'])[:200]}）")
    police = ev.get("police") or []
    if police:
        parts.append(f"最近执勤交警 {police[0]['id']}（{police[0]['distance_m']:.0f} 米）")
    return "；" + "，".join(parts) if parts else ""


def to_report(w: Warning, tz: ZoneInfo = LOCAL) -> ReportIn:
    # Only scalars and lists go in the text (the area and officers stay structured), cut so a
    # site visited by hundreds of vehicles still fits the hub's text limit.
    detail = ", ".join(f"{k}={v}" for k, v in sorted(w.evidence.items())
                       if not isinstance(v, dict) and k != "police")[:MAX_DETAIL]
    who = f"企业 {rules.subject(w)}" if w.kind == rules.LICENCE else \
        f"地点 {rules.subject(w)}" if w.kind == rules.BLACK_SITE else f"车辆 {w.vehicle}"
    text = (f"{TEXT[w.kind]}：{who}，{_local(w.start, tz)} 至 {_local(w.end, tz)}，"
            f"严重程度 {w.severity}（{detail}）{_intercept(w.evidence)}")
    return ReportIn(
        channel="system", text=text, reported_at=datetime.fromtimestamp(w.end, UTC),
        lon=round(w.lon, 6), lat=round(w.lat, 6), category=CATEGORY,
        idempotency_key=idempotency_key(w),
        source_ref=source_ref(w))
