"""The periodic report of a department (weekly or monthly), as a document a leader reads:
HTML (charts embedded as PNG) and PDF (reportlab, with its built-in CJK font STSong-Light, so
no font file has to be installed). Charts are drawn with matplotlib's object API (no pyplot
global state), labelled with unit ids and English axis titles (no CJK font needed there).
"""

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cityos_contracts.review import Contribution, RankingEntry, RoundFacts, UnitFigures


@dataclass(frozen=True)
class ReportData:
    department: str
    department_name: str
    period: str  # weekly | monthly
    start: datetime
    end: datetime
    total: UnitFigures | None
    units: list[UnitFigures]
    daily: list[tuple[datetime, int, int]]
    contribution: Contribution | None
    rank: RankingEntry | None
    ranked: int  # departments ranked
    late: list[RoundFacts]
    tz: ZoneInfo


def period_bounds(period: str, day: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The local week (Monday to Monday) or month containing `day`."""
    local = day.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        start = local - timedelta(days=local.weekday())
        return start, start + timedelta(days=7)
    start = local.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} 秒"
    if seconds < 7200:
        return f"{seconds / 60:.1f} 分钟"
    return f"{seconds / 3600:.1f} 小时"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)  # type: ignore[no-untyped-call]
    return buffer.getvalue()


def on_time_chart(units: list[UnitFigures]) -> bytes:
    fig = Figure(figsize=(7, 3.2), dpi=110)
    ax = fig.add_subplot()
    names = [u.unit or u.department for u in units] or ["(none)"]
    xs = range(len(names))
    accept = [100 * (u.accept_on_time_rate or 0) for u in units] or [0]
    dispose = [100 * (u.dispose_on_time_rate or 0) for u in units] or [0]
    ax.bar([x - 0.2 for x in xs], accept, width=0.4, label="accepted on time", color="#2b6cb0")
    ax.bar([x + 0.2 for x in xs], dispose, width=0.4, label="disposed on time", color="#38a169")
    ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of cases received")
    ax.set_title("On-time rates by unit")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def trend_chart(daily: list[tuple[datetime, int, int]]) -> bytes:
    fig = Figure(figsize=(7, 3.0), dpi=110)
    ax = fig.add_subplot()
    days = [d for d, _, _ in daily]
    ax.plot(days, [r for _, r, _ in daily], marker="o", label="received",  # type: ignore[arg-type]
            color="#2b6cb0")
    ax.plot(days, [h for _, _, h in daily], marker="s", label="handled",  # type: ignore[arg-type]
            color="#dd6b20")
    ax.set_ylabel("cases")
    ax.set_title("Cases per day")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig)


def summary_rows(d: ReportData) -> list[tuple[str, str]]:
    t = d.total
    rows = [
        ("受理案件 Cases received", str(t.received if t else 0)),
        ("按时签收率 Accepted on time", _pct(t.accept_on_time_rate if t else None)),
        ("按时处置率 Disposed on time", _pct(t.dispose_on_time_rate if t else None)),
        ("平均签收用时 Avg. acceptance", _dur(t.accept_time_avg_s if t else None)),
        ("签收用时 P90 Acceptance p90", _dur(t.accept_time_p90_s if t else None)),
        ("平均处置用时 Avg. disposal", _dur(t.dispose_time_avg_s if t else None)),
        ("处置用时 P90 Disposal p90", _dur(t.dispose_time_p90_s if t else None)),
        ("退回 Returns", str(t.returns if t else 0)),
        ("超时升级 Escalations", str(t.escalations if t else 0)),
        ("重新办理率 Reopen rate", _pct(t.reopen_rate if t else None)),
        ("满意度 Satisfaction (1–5)", _num(t.satisfaction_avg if t else None)),
    ]
    if d.rank is not None:
        place = f"{d.rank.rank} / {d.ranked}" if d.rank.rank else "未排名 not ranked"
        rows.append(("综合评分 Score (rank)", f"{_num(d.rank.score, 1)} ({place})"))
    return rows


UNIT_HEADER = ("单位 Unit", "受理", "按时签收", "按时处置", "平均签收", "平均处置", "退回",
               "升级", "重办率", "满意度")


def unit_rows(d: ReportData) -> list[tuple[str, ...]]:
    return [(u.unit or "", str(u.received), _pct(u.accept_on_time_rate),
             _pct(u.dispose_on_time_rate), _dur(u.accept_time_avg_s), _dur(u.dispose_time_avg_s),
             str(u.returns), str(u.escalations), _pct(u.reopen_rate), _num(u.satisfaction_avg))
            for u in d.units]


def contribution_rows(d: ReportData) -> list[tuple[str, str]]:
    c = d.contribution
    if c is None:
        return [("数据贡献 Data contribution", "本期无数据 no data this period")]
    return [("数据集 Datasets", str(c.datasets)), ("有效记录 Records kept", f"{c.accepted:,}"),
            ("有效率 Validity", _pct(c.validity_rate)),
            ("完整度 Completeness", _pct(c.completeness)),
            ("平均时延 Mean freshness", _dur(c.freshness_mean_s))]


def late_rows(d: ReportData) -> list[tuple[str, ...]]:
    return [(str(r.case_id), r.unit, r.category or "", r.dispatched_at.astimezone(d.tz)
             .strftime("%m-%d %H:%M"), str(r.escalations),
             "超时" if r.handled_at is None or (r.dispose_due and r.handled_at > r.dispose_due)
             else "按时") for r in d.late]


def title(d: ReportData) -> str:
    kind = "周报" if d.period == "weekly" else "月报"
    last = (d.end - timedelta(days=1)).astimezone(d.tz)
    return (f"{d.department_name}（{d.department}）行政效能{kind} "
            f"{d.start.astimezone(d.tz):%Y-%m-%d} 至 {last:%Y-%m-%d}")


def _table(header: tuple[str, ...] | None, rows: Sequence[tuple[str, ...]]) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" \
        if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table>{head}{body}</table>"


def render_html(d: ReportData) -> str:
    charts = "".join(
        f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for alt, png in (("on-time rates", on_time_chart(d.units)),
                         ("cases per day", trend_chart(d.daily))))
    late = _table(("案件 Case", "单位 Unit", "类别", "派遣时间", "升级", "处置"), late_rows(d)) \
        if d.late else "<p>本期无超时或升级案件。</p>"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title(d))}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif;
       max-width: 60em; margin: 2em auto; color: #1a202c; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; border-bottom: 1px solid #cbd5e0; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #cbd5e0; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0; }}
.note {{ color: #718096; font-size: 0.85em; }}
</style></head><body>
<h1>{html.escape(title(d))}</h1>
<p class="note">统计口径：本期内派遣到本部门各单位的案件（按派遣时间），签收与处置时限自派遣起算。
生成时间 {datetime.now(d.tz):%Y-%m-%d %H:%M}。</p>
<h2>一、总体情况 Summary</h2>{_table(None, summary_rows(d))}
<h2>二、各单位 By unit</h2>{_table(UNIT_HEADER, unit_rows(d))}
{charts}
<h2>三、数据贡献 Data contribution</h2>{_table(None, contribution_rows(d))}
<h2>四、超时与升级案件 Late and escalated cases</h2>{late}
</body></html>
"""


def render_pdf(d: ReportData) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import cm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = "STSong-Light"
    if font not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    heading = ParagraphStyle("h", fontName=font, fontSize=15, leading=20, spaceAfter=8)
    section = ParagraphStyle("s", fontName=font, fontSize=12, leading=16, spaceBefore=10,
                             spaceAfter=4)
    normal = ParagraphStyle("n", fontName=font, fontSize=8.5, leading=12)

    def table(rows: Sequence[tuple[str, ...]], header: bool = False) -> Table:
        t = Table([list(r) for r in rows], hAlign="LEFT")
        style = [("FONT", (0, 0), (-1, -1), font, 8), ("GRID", (0, 0), (-1, -1), 0.4,
                                                          colors.grey),
                 ("ALIGN", (1, 0), (-1, -1), "RIGHT")]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")))
        t.setStyle(TableStyle(style))
        return t

    def image(png: bytes) -> Image:
        return Image(io.BytesIO(png), width=16 * cm, height=16 * cm * 3.1 / 7)

    story = [Paragraph(html.escape(title(d)), heading),
             Paragraph("统计口径：本期内派遣到本部门各单位的案件（按派遣时间），签收与处置时限自派遣起算。",
                       normal),
             Paragraph("一、总体情况", section), table(summary_rows(d)),
             Paragraph("二、各单位", section), table([UNIT_HEADER, *unit_rows(d)], header=True),
             Spacer(1, 6), image(on_time_chart(d.units)), image(trend_chart(d.daily)),
             Paragraph("三、数据贡献", section), table(contribution_rows(d)),
             Paragraph("四、超时与升级案件", section)]
    if d.late:
        story.append(table([("案件", "单位", "类别", "派遣时间", "升级", "处置"), *late_rows(d)],
                           header=True))
    else:
        story.append(Paragraph("本期无超时或升级案件。", normal))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, title=title(d), leftMargin=2 * cm,
                      rightMargin=2 * cm, topMargin=1.8 * cm, bottomMargin=1.8 * cm
                      ).build(story)
    return buffer.getvalue()
