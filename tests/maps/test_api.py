"""The maps service's HTTP API against the running mesh: the live feed, layer data, box select,
degrading when a service is absent, and sign-in."""

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from maps.conftest import City

pytestmark = pytest.mark.slow


async def read_events(client: httpx.AsyncClient, path: str, headers: dict[str, str],
                      until: Any, timeout_s: float = 60.0) -> list[tuple[str, Any]]:
    """SSE events of `path` until `until(events)` holds."""
    events: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", []
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                events.append((name, json.loads("\n".join(data))))
                name, data = "message", []
                if until(events):
                    return events
            assert time.monotonic() < deadline, f"timed out after {[e[0] for e in events]}"
    return events


async def test_live_feed_sends_a_snapshot_then_what_changed(city: City) -> None:
    city.report("井盖缺失，行人容易踩空", 120.95, 31.98, category="0301")
    async with httpx.AsyncClient(base_url=city.maps, timeout=90) as client:
        events = await read_events(
            client, "/api/live?theme=overall", city.headers("leader"),
            until=lambda evs: any(n == "vehicles" and not d["full"] for n, d in evs))
    names = [n for n, _ in events]
    assert names[:6] == ["hello", "vehicles", "sensors", "staff", "cases", "board"]
    snapshot = events[1][1]
    assert snapshot["full"] and len(snapshot["id"]) == len(snapshot["x"]) == len(snapshot["t"])
    assert events[3][1]["full"] and events[3][1]["id"] == []  # nobody on duty without dispatch
    assert events[4][1]["full"] and any(c["category"] == "0301" for c in events[4][1]["items"])
    board = events[5][1]
    assert board["theme"] == "overall"
    assert {f["id"] for f in board["figures"]} >= {"cases_today", "open_cases", "vehicles"}
    delta = next(d for n, d in events if n == "vehicles" and not d["full"])
    assert delta["id"] and len(delta["id"]) == len(delta["x"]) == len(delta["v"])


async def test_layers_and_themes(city: City) -> None:
    async with httpx.AsyncClient(base_url=city.maps, timeout=60,
                                 headers=city.headers("leader")) as client:
        themes = (await client.get("/api/themes")).json()
        assert themes[0]["id"] == "overall" and len(themes) >= 8
        roads = (await client.get("/api/themes/overall/layers/roads")).json()
        assert roads["type"] == "FeatureCollection" and len(roads["features"]) > 1000
        hot = (await client.get("/api/themes/overall/layers/hotspots")).json()
        assert hot["cells"] and all(c["count"] >= 1 for c in hot["cells"])
        density = (await client.get("/api/themes/traffic/layers/density")).json()
        assert sum(c["count"] for c in density["cells"]) > 0
        missing = await client.get("/api/themes/overall/layers/vehicles")
        assert missing.status_code == 400  # live: it comes over the feed
        assert (await client.get("/api/themes/nope")).status_code == 404
        efficiency = (await client.get("/api/board/efficiency")).json()
        charts = {c["id"]: c for c in efficiency["charts"]}
        # The service's own client reads ingestion's contribution for every screen.
        assert sum(charts["contribution"]["series"][0]["values"]) > 0
        city_data = (await client.get("/api/city")).json()
        assert len(city_data["divisions"]["features"]) == 16 and len(city_data["categories"]) == 33


async def fleet_on_the_map(city: City, client: httpx.AsyncClient, at_least: int = 250) -> None:
    """Wait until the simulator's fleet has reported (its first ticks report a part of it)."""
    for _ in range(120):
        board = (await client.get("/api/board/overall", headers=city.headers("leader"))).json()
        if next(f["value"] for f in board["figures"] if f["id"] == "vehicles") >= at_least:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the fleet did not show up")


async def test_box_select_groups_cases_vehicles_and_stored_things(city: City) -> None:
    receipt = city.report("路口积水严重车辆无法通行", 120.90, 32.00, category="0701")
    square = {"type": "Polygon", "coordinates": [[[120.85, 31.95], [120.95, 31.95],
                                                  [120.95, 32.05], [120.85, 32.05],
                                                  [120.85, 31.95]]]}
    async with httpx.AsyncClient(base_url=city.maps, timeout=60,
                                 headers=city.headers("admin")) as client:
        await fleet_on_the_map(city, client)
        answer = (await client.post("/api/select", json={"polygon": square})).json()
        kinds = {g["kind"] for g in answer["groups"]}
        assert {"incident", "mobile"} <= kinds, answer["groups"]
        cases = [i for g in answer["groups"] if g["kind"] == "incident" for i in g["items"]]
        assert str(receipt["case_id"]) in {i["id"] for i in cases}
        assert all(120.85 <= i["lon"] <= 120.95 for g in answer["groups"] for i in g["items"]
                   if i["lon"] is not None)
        bad = await client.post("/api/select", json={"polygon": {"type": "Point",
                                                                  "coordinates": [1, 2]}})
        assert bad.status_code == 400
        # Dispatch is not deployed in this mesh: orders are refused as unavailable, clearly.
        order = await client.post("/api/tasks", json={"text": "转移群众", "staff_ids": ["s1"],
                                                      "polygon": square})
        assert order.status_code == 503 and "dispatch" in order.json()["detail"]
        rules = await client.get("/api/routing/rules")
        assert rules.status_code == 503
        # Without dispatch, no staff names: the staff layer shows the ids.
        assert (await client.get("/api/staff/names")).json() == {"names": {}}
        status = (await client.get("/api/services")).json()
        assert status["events"] and not status["dispatch"]


async def test_sign_in(city: City) -> None:
    async with httpx.AsyncClient(base_url=city.maps, timeout=30) as client:
        bad = await client.post("/api/session", json={"username": "leader", "password": "no"})
        assert bad.status_code == 401
        good = await client.post("/api/session", json={
            "username": "leader", "password": city.passwords["leader"]})
        assert good.status_code == 200
        user = good.json()["user"]
        assert user["roles"] == ["leader"] and "maps:read" in user["scopes"]
        me = await client.get("/api/me", headers={
            "Authorization": f"Bearer {good.json()['access_token']}"})
        assert me.json()["unit"] == "CMD"
        # Renewal with the refresh token (used up: the answer carries the next one).
        first = good.json()["refresh_token"]
        renewed = await client.post("/api/session/refresh", json={"refresh_token": first})
        assert renewed.status_code == 200, renewed.text
        assert renewed.json()["user"]["sub"] == "leader"
        assert renewed.json()["refresh_token"] not in (None, first)
        again = await client.post("/api/session/refresh", json={"refresh_token": first})
        assert again.status_code == 401 and "already used" in again.json()["detail"]
        # The reuse ended that sign-in; a new one is signed out, and its token is dead.
        fresh = (await client.post("/api/session", json={
            "username": "leader", "password": city.passwords["leader"]})).json()
        out = await client.post("/api/session/end", json={"refresh_token": fresh["refresh_token"]})
        assert out.status_code == 204
        dead = await client.post("/api/session/refresh",
                                 json={"refresh_token": fresh["refresh_token"]})
        assert dead.status_code == 401 and "signed out" in dead.json()["detail"]
        assert (await client.get("/api/me")).status_code == 401
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
