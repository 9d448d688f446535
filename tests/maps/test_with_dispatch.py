"""The screens with the dispatch service deployed: routing rules and their preview, wartime
orders to field staff, the field staff layer, the console's staff picker, a field worker's
steps going through dispatch (deadlines, evidence), and the page renewing its sign-in with
refresh tokens.

A mesh of its own (its own database and NATS namespace), with dispatch started too. Access
tokens live 70 s here, so the page renews within the test (a minute before expiry).
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from maps.conftest import LIVE_TIMEOUT_MS, OUTPUT, Factory, shot, sign_in
from maps.stack import BIN, Stack, running

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (BIN / "cityos-dispatch").exists(), reason="the dispatch service is not installed")]
SQUARE = {"type": "Polygon", "coordinates": [[[120.85, 31.95], [120.95, 31.95], [120.95, 32.05],
                                              [120.85, 32.05], [120.85, 31.95]]]}


@pytest.fixture(scope="module")
async def mesh(own_database: Factory) -> AsyncIterator[Stack]:
    url, prefix = await own_database("dispatch")
    with running(url, prefix, OUTPUT / "logs-dispatch", vehicles=20, with_dispatch=True,
                 identity_env={"CITYOS_TOKEN_LIFETIME_S": "70"}) as stack:
        yield stack


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_routing_rules_come_from_dispatch(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30, headers=admin) as client:
        rules = (await client.get("/api/routing/rules")).json()
        assert any(r["rule"]["category"] == "0101" for r in rules)
        assert (await client.get("/api/services")).json()["dispatch"]


async def test_wartime_order_reaches_the_field_worker(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    worker = bearer(mesh.token("w1", mesh.person("w1", "CGJ-329901", ["field_staff"])))
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        duty = await client.post(mesh.urls["dispatch"] + "/staff/me/duty", headers=worker,
                                 json={"on_duty": True, "lon": 120.9, "lat": 32.0})
        assert duty.status_code == 200, duty.text
        order = await client.post("/api/tasks", headers=admin, json={
            "text": "转移低洼处群众", "staff_ids": ["w1"], "polygon": SQUARE})
        assert order.status_code == 201, order.text
        assert order.json()["emergency"]["lead"] == "YJJ"
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()
        mine = [t for t in tasks["items"] if t.get("task_id")]
        assert [t["title"] for t in mine] == ["转移低洼处群众"]
        done = await client.post(f"/api/field/orders/{mine[0]['task_id']}/done", headers=worker)
        assert done.json()["state"] == "done"


async def test_field_steps_go_through_dispatch(mesh: Stack) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    hotline = mesh.client("hotline", ["cases:report"])
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        token = (await client.post(mesh.urls["identity"] + "/oauth/token", auth=hotline,
                                   data={"grant_type": "client_credentials"})).json()
        receipt = (await client.post(mesh.urls["events"] + "/reports", headers=bearer(
            token["access_token"]), json={
            "channel": "hotline_12345", "text": "路灯不亮，晚上一片漆黑", "category": "0302",
            "reported_at": datetime.now(UTC).isoformat(), "lon": 120.76, "lat": 32.08})).json()
        case_id = receipt["case_id"]
        for action in ("accept", "dispatch"):
            answer = await client.post(f"/api/cases/{case_id}/{action}", headers=admin,
                                       json={"reason": "ok"})
            assert answer.status_code == 200, answer.text
        unit = answer.json()["case"]["handling_unit"]
        worker = bearer(mesh.token("w2", mesh.person("w2", unit, ["field_staff"])))
        detail: dict[str, Any] = {}
        for _ in range(50):  # dispatch takes the case from the case-event stream
            detail = (await client.get(f"/api/cases/{case_id}", headers=admin)).json()
            if detail["assignment"]:
                break
            await asyncio.sleep(0.2)
        assert detail["assignment"]["lead"] == unit
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()
        assert case_id in [t["case_id"] for t in tasks["items"]]
        accepted = await client.post(f"/api/field/tasks/{case_id}/accept", headers=worker,
                                     json={})
        assert accepted.json()["state"] == "accepted", accepted.text
        handled = await client.post(f"/api/field/tasks/{case_id}/handled", headers=worker,
                                    json={"note": "已更换灯泡", "evidence": ["photo:sha256:ab"]})
        assert handled.json()["evidence"] == ["photo:sha256:ab"], handled.text
        case = (await client.get(f"/api/cases/{case_id}", headers=admin)).json()["case"]
        assert case["status"] == "handled"


async def on_duty(mesh: Stack, client: httpx.AsyncClient, username: str, unit: str, lon: float,
                  lat: float, on: bool = True, name: str = "") -> None:
    worker = bearer(mesh.token(username, mesh.person(username, unit, ["field_staff"], name)))
    duty = await client.post(mesh.urls["dispatch"] + "/staff/me/duty", headers=worker,
                             json={"on_duty": on, "lon": lon, "lat": lat})
    assert duty.status_code == 200, duty.text


async def draw_box(page: Any, half_w: float = 160, half_h: float = 130) -> None:
    await page.click("button[data-action=draw]")
    box = await page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    corners = [(cx - half_w, cy - half_h), (cx + half_w, cy - half_h),
               (cx + half_w, cy + half_h), (cx - half_w, cy + half_h)]
    for x, y in corners:
        await page.mouse.click(x, y)
        await page.wait_for_timeout(250)
    await page.mouse.click(*corners[0])


async def test_field_staff_layer_and_wartime_task(mesh: Stack, browser: Any) -> None:
    """On-duty staff are a layer of their own (switched like the others), shown by name; a box
    select lists them by unit, and only they can be ticked for a task."""
    async with httpx.AsyncClient(timeout=30) as client:
        await on_duty(mesh, client, "fs1", "CGJ-329901", 120.862, 32.012, name="张一鸣")
        await on_duty(mesh, client, "fs2", "CGJ-329901", 120.866, 32.010, name="李二娜")
        await on_duty(mesh, client, "fs3", "CGJ-329901", 120.864, 32.014, name="王三")
        await on_duty(mesh, client, "fs3", "CGJ-329901", 120.864, 32.014, on=False)
        admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
        listed = (await client.get(mesh.urls["dispatch"] + "/staff", headers=admin,
                                   params={"on_duty": "true"})).json()
    # Everyone on duty with a position, fs1 and fs2 among them (earlier tests add others).
    expected = len([p for p in listed if p["lon"] is not None])
    assert {"fs1", "fs2"} <= {p["staff_id"] for p in listed} and expected >= 2
    page = await browser.new_page(viewport={"width": 1920, "height": 1080})
    await page.goto(mesh.maps + "/#theme=emergency")
    await sign_in(page, "admin", mesh.secrets["admin"])
    await page.wait_for_function(
        f"() => window.__cityos && window.__cityos.staff() >= {expected}",
        timeout=LIVE_TIMEOUT_MS)
    await page.wait_for_timeout(3000)  # fs3's off-duty fix has had time to arrive
    assert await page.evaluate("() => window.__cityos.staff()") == expected
    assert await page.locator(".staff-marker").count() == expected
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=staff_on_duty] .figure-value')"
        f".textContent.trim() === '{expected}'", timeout=LIVE_TIMEOUT_MS)
    await page.uncheck("input[data-layer=staff]")
    assert await page.locator(".staff-marker").count() == 0
    await page.check("input[data-layer=staff]")
    assert await page.locator(".staff-marker").count() == expected
    await page.evaluate("() => { window.__cityos.focus(120.864, 32.012, 15); }")
    await page.locator(".staff-marker:not([d='M0 0'])").first.click()  # in view
    popup = page.locator(".leaflet-popup-content")
    await popup.wait_for()
    shown = await popup.inner_text()  # the name (from dispatch), the id beside it
    assert ("张一鸣" in shown and "fs1" in shown) or ("李二娜" in shown and "fs2" in shown), shown
    await page.screenshot(path=shot("big-field-staff-layer"))
    await page.click(".leaflet-popup-close-button")
    await draw_box(page)  # around the staff, in the middle of the map
    await page.locator("[data-testid=selection]").wait_for(state="visible")
    group = page.locator(".sel-group[data-kind=staff]")
    await group.wait_for()
    ticks = await group.locator("input[data-staff]").evaluate_all(
        "els => els.map(e => e.dataset.staff)")
    assert sorted(ticks) == ["fs1", "fs2"]
    listed_names = await group.inner_text()
    assert "张一鸣" in listed_names and "李二娜" in listed_names, listed_names
    # Vehicles are not people: nothing else can be ticked.
    assert await page.locator(".sel-group:not([data-kind=staff]) input[type=checkbox]").count() \
        == 0
    await group.locator("input[data-staff=fs1]").check()
    await page.fill("input.task-text", "到低洼处疏散群众")
    await page.click("button[data-action=issue-task]")
    await page.wait_for_selector(".task-form[data-sent]")
    await page.screenshot(path=shot("big-wartime-staff-task"))
    await page.close()
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        worker = bearer(mesh.token("fs1", mesh.person("fs1", "CGJ-329901", ["field_staff"])))
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()["items"]
        assert "到低洼处疏散群众" in [t["title"] for t in tasks]
        box = await client.post("/api/select", headers=admin, json={"polygon": SQUARE})
        staff = [g for g in box.json()["groups"] if g["kind"] == "staff"]
        assert [g["group"] for g in staff] == ["CGJ-329901"]
        ids = {i["id"] for i in staff[0]["items"]}
        assert {"fs1", "fs2"} <= ids and "fs3" not in ids
        names = {i["id"]: i["name"] for i in staff[0]["items"]}
        assert (names["fs1"], names["fs2"]) == ("张一鸣", "李二娜")
        known = (await client.get("/api/staff/names", headers=admin)).json()["names"]
        assert (known["fs1"], known["fs2"]) == ("张一鸣", "李二娜") and "fs3" not in known
        # A leader in front of the big screen sees who is on duty, by name.
        leader = bearer(mesh.token("boss", mesh.person("boss", "CMD", ["leader"])))
        named = (await client.get("/api/staff/names", headers=leader)).json()["names"]
        assert (named["fs1"], named["fs2"]) == ("张一鸣", "李二娜")


async def console(browser: Any, mesh: Stack, hash_: str) -> Any:
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(mesh.maps + "/console#" + hash_)
    await sign_in(page, "admin", mesh.secrets["admin"])
    return page


async def test_console_gives_a_dispatched_case_to_the_nearest_person(mesh: Stack,
                                                                     browser: Any) -> None:
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    hotline = mesh.client("hotline-picker", ["cases:report"])
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        token = (await client.post(mesh.urls["identity"] + "/oauth/token", auth=hotline,
                                   data={"grant_type": "client_credentials"})).json()
        receipt = (await client.post(mesh.urls["events"] + "/reports", headers=bearer(
            token["access_token"]), json={
            "channel": "hotline_12345", "text": "井盖破损，行人容易踩空", "category": "0302",
            "reported_at": datetime.now(UTC).isoformat(), "lon": 120.80, "lat": 32.05})).json()
        case_id = receipt["case_id"]
        accepted = await client.post(f"/api/cases/{case_id}/accept", headers=admin,
                                     json={"reason": "ok"})
        assert accepted.status_code == 200, accepted.text
        # Dispatch routes an accepted case itself; the operator's dispatch may come second.
        sent = await client.post(f"/api/cases/{case_id}/dispatch", headers=admin,
                                 json={"reason": "ok"})
        assert sent.status_code in (200, 409), sent.text
        detail: dict[str, Any] = {}
        for _ in range(50):  # dispatch takes the case from the case-event stream
            detail = (await client.get(f"/api/cases/{case_id}", headers=admin)).json()
            if detail["assignment"]:
                break
            await asyncio.sleep(0.2)
        unit = detail["assignment"]["lead"]
        # Three people of the unit: far, near, and one off duty (not offered).
        await on_duty(mesh, client, "far.one", unit, 120.84, 32.05)
        await on_duty(mesh, client, "near.one", unit, 120.801, 32.051)
        await on_duty(mesh, client, "off.one", unit, 120.80, 32.05, on=False)
        listed = (await client.get(f"/api/cases/{case_id}/staff", headers=admin)).json()
        ids = [p["staff_id"] for p in listed["items"]]
        # Earlier tests put others of the unit on duty farther away.
        assert ids[:2] == ["near.one", "far.one"] and "off.one" not in ids
        distances = [p["distance_m"] for p in listed["items"]]
        assert distances == sorted(distances) and distances[0] < 200 < distances[1]
    page = await console(browser, mesh, f"case/{case_id}")
    card = page.locator("[data-testid=staff-card]")
    await card.wait_for()
    await card.locator("button[data-action=load-staff]").click()
    await page.wait_for_selector("[data-testid=staff-list] li[data-staff]")
    order = await page.locator("[data-testid=staff-list] li[data-staff]").evaluate_all(
        "els => els.map(e => e.dataset.staff)")
    assert order == ids
    await page.screenshot(path=shot("console-staff-picker"))
    await page.locator("li[data-staff='near.one'] button[data-action=assign]").click()
    assignee = page.locator("[data-testid=assignee]")
    await assignee.wait_for()
    assert await assignee.inner_text() == "near.one"
    await page.screenshot(path=shot("console-staff-assigned"))
    await page.close()
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        worker = bearer(mesh.token("near.one", mesh.person("near.one", unit, ["field_staff"])))
        tasks = (await client.get("/api/field/tasks", headers=worker)).json()["items"]
        assert case_id in [t.get("case_id") for t in tasks]


async def test_routing_rule_preview_before_saving(mesh: Stack, browser: Any) -> None:
    """Before saving a rule the console asks dispatch's dry run where a case would go: with the
    rules in force and with the rule being written; nothing is saved."""
    admin = bearer(mesh.token("admin", mesh.secrets["admin"]))
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30, headers=admin) as client:
        before = (await client.get("/api/routing/rules")).json()
        answer = await client.post("/api/routing/preview", json={
            "case": {"category": "0101", "district": "329902",
                     "at": datetime.now(UTC).isoformat()},
            "rule": {"lead": "CGJ-329902", "category": "0101", "district": "329902"}})
        assert answer.status_code == 200, answer.text
        current, with_rule = answer.json()["current"], answer.json()["with_rule"]
        assert (current["lead"], current["level"]) == ("HWC-329902", "district")
        assert current["rule_id"] in {r["rule_id"] for r in before}
        assert (with_rule["lead"], with_rule["rule_id"]) == ("CGJ-329902", None)
    page = await console(browser, mesh, "routing")
    await page.wait_for_selector("select[name=category]")
    await page.select_option("select[name=category]", "0101")
    await page.select_option("select[name=division]", "329902")
    await page.select_option("select[name=lead]", "CGJ-329902")
    await page.click("button[data-action=preview]")
    preview = page.locator("[data-testid=route-preview]")
    await preview.wait_for(state="visible")
    decided = page.locator("[data-decision=current]")
    await decided.wait_for()
    assert await page.locator("[data-preview=absent]").count() == 0
    assert await decided.get_attribute("data-lead") == "HWC-329902"
    assert await decided.get_attribute("data-rule") == str(current["rule_id"])
    drafted = page.locator("[data-decision=with-rule]")
    assert await drafted.get_attribute("data-lead") == "CGJ-329902"
    assert await drafted.get_attribute("data-rule") == ""  # the rule is not saved yet
    assert "区级" in await decided.inner_text()
    await page.screenshot(path=shot("console-routing-preview"))
    await page.close()
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30, headers=admin) as client:
        assert (await client.get("/api/routing/rules")).json() == before


async def test_page_renews_its_sign_in_without_the_password(mesh: Stack, browser: Any) -> None:
    page = await console(browser, mesh, "queue")
    await page.wait_for_selector("tr.row, .empty, table.grid")
    stored = await page.evaluate("() => JSON.parse(sessionStorage.getItem('cityos.session'))")
    assert stored["refresh"] and mesh.secrets["admin"] not in json.dumps(stored)
    # 70 s tokens are renewed a minute before they expire: after ~10 s.
    await page.wait_for_function(
        f"() => JSON.parse(sessionStorage.getItem('cityos.session')).token !== "
        f"{json.dumps(stored['token'])}", timeout=30000)
    renewed = await page.evaluate("() => JSON.parse(sessionStorage.getItem('cityos.session'))")
    assert renewed["refresh"] != stored["refresh"]
    await page.reload()  # the renewed session carries on without signing in again
    await page.wait_for_selector("tr.row, .empty, table.grid")
    assert await page.locator("form.signin-card").count() == 0
    await page.screenshot(path=shot("console-renewed-session"))
    await page.click("text=退出")
    await page.wait_for_selector("form.signin-card input[name=username]")
    assert await page.evaluate("() => sessionStorage.getItem('cityos.session')") is None
    await page.close()
    async with httpx.AsyncClient(base_url=mesh.maps, timeout=30) as client:
        for old in (stored["refresh"], renewed["refresh"]):
            gone = await client.post("/api/session/refresh", json={"refresh_token": old})
            assert gone.status_code == 401, gone.text

