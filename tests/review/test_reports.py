"""Figures from events published straight onto the streams (a past week of a sanitation
branch), data contribution, the ranking, and the weekly report as HTML and PDF."""

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dispatch.conftest import eventually
from litestar.testing import AsyncTestClient

from cityos_contracts.cases import CaseEvent
from cityos_contracts.datasets import ContributionMetrics
from cityos_contracts.dispatch import DispatchEvent
from cityos_contracts.subjects import CASE_EVENTS, CONTRIBUTION, DISPATCH_EVENTS
from cityos_kit.auth import LocalIssuer
from cityos_kit.bus import Bus
from cityos_review.rebuild import stream_of

WEEK = datetime(2026, 10, 12, 0, 0, tzinfo=UTC)  # a Monday (08:00 in the city)
BASE_CASE = 7_000_000 + uuid.uuid4().int % 1_000_000


def case_events(case_id: int, unit: str, start: datetime, accept_min: float, handle_min: float,
                ) -> list[CaseEvent]:
    steps = [("received", "received", 0, {}), ("classified", "classified", 0,
                                               {"category": "0101"}),
             ("accepted", "accepted", 1, {}), ("dispatched", "dispatched", 2, {"unit": unit}),
             ("started", "handling", 2 + accept_min, {}),
             ("handled", "handled", 2 + handle_min, {}), ("verified", "verified", 3 + handle_min,
                                                          {}),
             ("closed", "closed", 4 + handle_min, {})]
    return [CaseEvent(event_id=uuid.uuid4().hex, case_id=case_id, seq=i + 1, kind=k,  # type: ignore[arg-type]
                      to_status=s, actor="t", actor_unit="CMD",  # type: ignore[arg-type]
                      at=start + timedelta(minutes=m), **f)
            for i, (k, s, m, f) in enumerate(steps)]


@pytest.fixture(scope="module")
async def past_week(make_settings: Any) -> AsyncIterator[list[int]]:
    """Six cases of HWC-329903 in the week of WEEK: accepted in 10..60 min (due 30), handled
    in 2..12 h (due 24 h); one escalation, ratings 3 and 5; and HWC's data contribution."""
    bus = Bus(make_settings("review-test"))
    await bus.connect()
    await bus.ensure_streams([stream_of(CASE_EVENTS), stream_of(DISPATCH_EVENTS),
                              stream_of(CONTRIBUTION)])
    ids = []
    for i, accept_min in enumerate((10, 20, 25, 40, 50, 60)):
        case_id = BASE_CASE + i
        ids.append(case_id)
        start = WEEK + timedelta(days=i % 5, hours=1)
        events = case_events(case_id, "HWC-329903", start, accept_min, 120 * (i + 1))
        for e in events:
            await bus.publish(CASE_EVENTS.format(case_id=str(case_id)), e,
                              msg_id=f"case:{case_id}:{e.seq}")
        dispatched = events[3].at
        extra: list[dict[str, Any]] = [{"kind": "routed", "accept_due": dispatched +
                                        timedelta(minutes=30), "dispose_due": dispatched +
                                        timedelta(hours=24)}]
        if accept_min > 30 and i == 5:
            extra.append({"kind": "escalated", "deadline": "accept"})
        if i in (0, 1):
            extra.append({"kind": "rated", "score": 3 + 2 * i})
        for fields in extra:
            d = DispatchEvent(event_id=uuid.uuid4().hex, case_id=case_id, at=dispatched,
                              actor="system:dispatch", unit="HWC-329903", round_seq=4,
                              **fields)
            await bus.publish(DISPATCH_EVENTS.format(case_id=str(case_id)), d,
                              msg_id=f"dispatch:{d.event_id}")
    metrics = ContributionMetrics(
        department="HWC", dataset="bins", window_start=WEEK + timedelta(days=1),
        window_end=WEEK + timedelta(days=1, hours=1), received=1000, accepted=950,
        rejected=50, validity_rate=0.95, completeness=0.8, freshness_mean_s=30.0,
        freshness_max_s=300.0)
    await bus.publish(CONTRIBUTION.format(owner="HWC", dataset="bins"), metrics,
                      msg_id=f"contribution:{uuid.uuid4().hex}")
    await bus.close()
    yield ids


PERIOD = {"start": WEEK.isoformat(), "end": (WEEK + timedelta(days=7)).isoformat()}


async def test_figures_contribution_and_ranking(review: AsyncTestClient[Any],
                                                past_week: list[int]) -> None:
    async def unit() -> dict[str, Any] | None:
        response = await review.get("/review/units/HWC-329903", params=PERIOD)
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["received"] == 6 \
            and body["ratings"] == 2 and body["escalations"] == 1 and body["closed"] == 6 \
            else None

    f = await eventually(unit)
    assert (f["accepted_on_time"], f["disposed_on_time"], f["closed"]) == (3, 6, 6)
    assert f["accept_time_avg_s"] == pytest.approx(60 * (10 + 20 + 25 + 40 + 50 + 60) / 6)
    # percentile_cont: 0.9 of the way through the sorted six → between 50 and 60 minutes.
    assert f["accept_time_p90_s"] == pytest.approx(60 * (50 + 0.5 * 10))
    assert f["satisfaction_avg"] == 4.0

    async def data() -> list[Any]:
        return list((await review.get("/review/contribution", params=PERIOD)).json())

    (hwc,) = [c for c in await eventually(data) if c["department"] == "HWC"]
    assert (hwc["accepted"], hwc["validity_rate"], hwc["completeness"]) == (950, 0.95, 0.8)
    ranking = (await review.get("/review/ranking", params={**PERIOD, "level": "unit"})).json()
    (entry,) = [e for e in ranking["entries"] if e["name"] == "HWC-329903"]
    assert entry["components"]["accept_on_time"] == 0.5
    assert entry["components"]["data_contribution"] == pytest.approx(0.95 * 0.8)
    late = (await review.get("/review/drill", params={
        **PERIOD, "figure": "accepted_late", "unit": "HWC-329903"})).json()
    assert sorted(r["case_id"] for r in late["items"]) == past_week[3:]


async def test_weights_are_configurable(review: AsyncTestClient[Any],
                                        events_issuer: LocalIssuer) -> None:
    before = (await review.get("/review/ranking/weights")).json()
    only_speed = {**before, "accept_on_time": 1, "dispose_on_time": 0, "no_return": 0,
                  "no_escalation": 0, "no_reopen": 0, "satisfaction": 0, "data_contribution": 0}
    reader = {"Authorization": f"Bearer {events_issuer.token(scopes=('review:read',))}"}
    assert (await review.put("/review/ranking/weights", json=only_speed, headers=reader)
            ).status_code == 403
    assert (await review.put("/review/ranking/weights", json=only_speed)).status_code == 200
    try:
        ranking = (await review.get("/review/ranking",
                                    params={**PERIOD, "level": "unit"})).json()
        (entry,) = [e for e in ranking["entries"] if e["name"] == "HWC-329903"]
        assert entry["score"] == 50.0
        zero = {**only_speed, "accept_on_time": 0}
        assert (await review.put("/review/ranking/weights", json=zero)).status_code == 400
    finally:
        await review.put("/review/ranking/weights", json=before)


async def test_the_weekly_report_as_html_and_pdf(review: AsyncTestClient[Any],
                                                 past_week: list[int], tmp_path: Path) -> None:
    params = {"period": "weekly", "date": (WEEK + timedelta(days=3)).isoformat()}

    async def html() -> str | None:
        response = await review.get("/review/reports/HWC/report.html", params=params)
        assert response.status_code == 200, response.text
        return response.text if "HWC-329903" in response.text else None

    page = await eventually(html)
    assert "环境卫生管理处" in page and "周报" in page and "2026-10-12" in page
    assert page.count("data:image/png;base64,") == 2
    assert str(past_week[5]) in page  # the escalated case is listed
    pdf = await review.get("/review/reports/HWC/report.pdf", params=params)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 20_000
    assert 'filename="HWC-weekly-20261012.pdf"' in pdf.headers["content-disposition"]
    if shutil.which("pdftotext"):  # poppler, where installed: the text is really there
        (tmp_path / "r.pdf").write_bytes(pdf.content)
        text = (await asyncio.to_thread(
            subprocess.run, ["pdftotext", str(tmp_path / "r.pdf"), "-"], check=True,
            capture_output=True, text=True)).stdout
        assert "HWC-329903" in text
    monthly = await review.get("/review/reports/HWC/report.html",
                               params={"period": "monthly", "date": params["date"]})
    assert monthly.status_code == 200 and "月报" in monthly.text and "2026-10-01" in monthly.text
    assert (await review.get("/review/reports/NOPE/report.html")).status_code == 404
    naive = await review.get("/review/reports/HWC/report.html", params={"date": "2026-10-14"})
    assert naive.status_code == 400
