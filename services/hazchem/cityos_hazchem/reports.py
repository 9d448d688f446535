"""Warnings as event-hub reports: channel `system` on the `reports.system` stream.

Category 0803 "危化品异常" (in the demo city's categories.json, routed to YJJ). The idempotency
key names the vehicle, kind and the warning's start, so re-computing a window does not open the
case twice; a warning that recurs (a later interval) is a new report that the hub merges into
the open case by place and text.
"""

from datetime import UTC, datetime

from cityos_contracts.cases import ReportIn
from cityos_hazchem import rules
from cityos_hazchem.rules import Warning

CATEGORY = "0803"  # 危化品异常
TEXT = {
    rules.CLOSED_STAY: "危化品车辆在停产/关停企业停留",
    rules.NOTHING_STAY: "危化品车辆在无登记企业及POI处停留（疑似黑作坊）",
    rules.FATIGUE: "危化品车辆疲劳驾驶（连续驾驶超时未休息）",
    rules.NIGHT: "危化品车辆夜间禁行时段行驶",
    rules.NON_OPERATING: "非营运危化品车辆出车",
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def to_report(w: Warning) -> ReportIn:
    detail = ", ".join(f"{k}={v}" for k, v in sorted(w.evidence.items()))
    text = (f"{TEXT[w.kind]}：车辆 {w.vehicle}，{_iso(w.start)} 至 {_iso(w.end)}，"
            f"严重程度 {w.severity}（{detail}）")
    return ReportIn(
        channel="system", text=text, reported_at=datetime.fromtimestamp(w.end, UTC),
        lon=round(w.lon, 6), lat=round(w.lat, 6), category=CATEGORY,
        idempotency_key=f"hazchem:{w.kind}:{w.vehicle}:{int(w.start)}",
        source_ref=f"hazchem/{w.kind}/{w.vehicle}")
