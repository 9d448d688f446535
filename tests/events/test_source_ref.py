"""A recurring warning updates its open case: a report whose (channel, source_ref) matches an
open case joins it, however far away and whenever it comes; a closed case is not joined, and the
same reference from another channel is another matter."""

import asyncio
from typing import Any

from events.conftest import fresh_point, post_report, report
from litestar.testing import AsyncTestClient

TEXT = "危化品车辆偏离申报路线：车辆 苏F-H{n}，严重程度 1"


def warning(ref: str, n: int, minutes_ago: float, channel: str = "system") -> dict[str, Any]:
    # A fresh point each time: the place never brings these together, only the reference.
    body: dict[str, Any] = report(TEXT.format(n=n), fresh_point(), channel=channel,
                                  minutes_ago=minutes_ago, category="0803", source_ref=ref)
    return body


async def test_a_recurring_warning_joins_its_open_case_until_it_is_closed(
        events: AsyncTestClient[Any]) -> None:
    ref = "hazchem/route_deviation/苏F-H001"
    first = await post_report(events, warning(ref, 1, minutes_ago=60 * 30))
    case_id = first["case_id"]
    again = await post_report(events, warning(ref, 2, minutes_ago=60))
    assert again["case_id"] == case_id and again["merged"]
    case = await events.get(f"/cases/{case_id}")
    assert case.status_code == 200, case.text
    assert case.json()["case"]["report_count"] == 2
    assert {r["source_ref"] for r in case.json()["reports"]} == {ref}
    # Another subject, or the same reference from another channel: a case of its own.
    other = await post_report(events, warning("hazchem/route_deviation/苏F-H002", 3, 50))
    hotline = await post_report(events, warning(ref, 4, 45, channel="hotline_12345"))
    assert len({case_id, other["case_id"], hotline["case_id"]}) == 3
    for action in ("accept", "dispatch", "start", "finish", "verify", "close"):
        response = await events.post(f"/cases/{case_id}/{action}", json={})
        assert response.status_code == 200, (action, response.text)
    # Closed: the next recurrence opens a new case, and the one after joins that.
    after = await post_report(events, warning(ref, 5, minutes_ago=10))
    assert after["case_id"] != case_id and not after["merged"]
    later = await post_report(events, warning(ref, 6, minutes_ago=5))
    assert later["case_id"] == after["case_id"]


async def test_recurrences_racing_in_open_one_case(events: AsyncTestClient[Any]) -> None:
    ref = "hazchem/fatigue_driving/苏F-H009"
    answers = await asyncio.gather(*(post_report(events, warning(ref, 10 + i, 20 - i))
                                     for i in range(6)))
    assert len({a["case_id"] for a in answers}) == 1
    assert sum(not a["merged"] for a in answers) == 1
