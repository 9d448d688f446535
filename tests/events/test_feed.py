"""The live feed of case events, as server-sent events."""

import json
from typing import Any

from events.conftest import OPERATOR, post_report, report, token
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer


def parse(stream: str) -> list[dict[str, str]]:
    messages = []
    for block in stream.replace("\r\n", "\n").strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "data" in fields:
            messages.append(fields)
    return messages


async def test_the_feed_streams_a_case_s_events(events: AsyncTestClient[Any],
                                               events_issuer: LocalIssuer) -> None:
    receipt = await post_report(events, report("十字路口红绿灯坏了全是黄灯在闪"))
    case_id = receipt["case_id"]
    await events.post(f"/cases/{case_id}/accept", json={})
    response = await events.get("/cases/feed", params={"case_id": case_id, "since": 1,
                                                       "max_events": 3})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse(response.text)
    assert [m["event"] for m in messages] == ["received", "classified", "accepted"]
    assert [json.loads(m["data"])["case_id"] for m in messages] == [case_id] * 3
    # Reconnecting after the second event gives the third.
    again = await events.get("/cases/feed", params={"case_id": case_id, "max_events": 1},
                             headers={"Last-Event-ID": messages[1]["id"]})
    assert [m["event"] for m in parse(again.text)] == ["accepted"]
    # The whole city's feed is the command center's.
    unit = token(events_issuer, unit="CGJ", scopes=OPERATOR)
    assert (await events.get("/cases/feed", headers=unit)).status_code == 403
