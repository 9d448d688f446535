"""Search cases by status, category, division, reported time, text and area."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from events.conftest import post_report, report
from litestar.testing import AsyncTestClient

# A corner of 港闸街道 no other test reports in.
SPOT = (121.085, 31.905)


async def test_search_by_every_filter(events: AsyncTestClient[Any]) -> None:
    made = [
        await post_report(events, report("港闸路口井盖不见了只剩个洞", SPOT, minutes_ago=600)),
        await post_report(events, report("港闸码头有人私自储存大量化工桶，味道刺鼻",
                                         (SPOT[0] - 0.004, SPOT[1]), minutes_ago=300)),
        await post_report(events, report("港闸这边饭店油烟直排扰民，楼上住户受不了",
                                         (SPOT[0], SPOT[1] + 0.004), minutes_ago=120)),
    ]
    ids = [m["case_id"] for m in made]
    assert len(set(ids)) == 3
    square = {"type": "Polygon", "coordinates": [[
        [SPOT[0] - 0.002, SPOT[1] - 0.002], [SPOT[0] + 0.002, SPOT[1] - 0.002],
        [SPOT[0] + 0.002, SPOT[1] + 0.005], [SPOT[0] - 0.002, SPOT[1] + 0.005],
        [SPOT[0] - 0.002, SPOT[1] - 0.002]]]}
    now = datetime.now(UTC)

    async def found(**params: Any) -> list[int]:
        response = await events.get("/cases", params=params)
        assert response.status_code == 200, response.text
        return [c["case_id"] for c in response.json()["items"] if c["case_id"] in ids]

    assert await found(division="329903003") == ids[::-1]  # newest first
    assert await found(division="329903") == ids[::-1]
    assert await found(category="0803") == [ids[1]]
    assert await found(status=["classified"], category="0301") == [ids[0]]
    assert await found(text="化工桶") == [ids[1]]
    assert await found(text="油烟直排") == [ids[2]]
    assert await found(within=json.dumps(square)) == [ids[2], ids[0]]
    assert await found(bbox=f"{SPOT[0] - 0.005},{SPOT[1] - 0.001},{SPOT[0] - 0.003},"
                            f"{SPOT[1] + 0.001}") == [ids[1]]
    assert await found(start=(now - timedelta(hours=6)).isoformat(),
                       end=(now - timedelta(hours=4)).isoformat()) == [ids[1]]
    # Pages follow each other without overlap.
    first = (await events.get("/cases", params={"division": "329903003", "limit": 2})).json()
    second = (await events.get("/cases", params={"division": "329903003", "limit": 2,
                                                 "cursor": first["next_cursor"]})).json()
    listed = [c["case_id"] for c in first["items"] + second["items"]]
    assert len(listed) == len(set(listed)) and set(ids) <= set(listed)


async def test_bad_searches_are_refused(events: AsyncTestClient[Any]) -> None:
    for params in ({"status": "lost"}, {"text": "井"}, {"within": "{\"type\": \"Point\"}"},
                   {"bbox": "1,2,3"}, {"start": "2026-11-01T08:00:00"}, {"cursor": "!!"},
                   {"limit": 0}):
        response = await events.get("/cases", params=params)
        assert response.status_code == 400, (params, response.text)
