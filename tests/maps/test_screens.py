"""The three screens in a real browser (Debian's Chromium, driven by Playwright), clicking
through the flows of the issue: the overall map shows live vehicles and cases; a thematic map
switches; a box select lists what is inside; an operator merges two reports and dispatches the
case; a field worker handles it; the overall figures change. Screenshots of every screen go
to test-output/maps/.

The tests run in order and share one city (the flow goes on from one test to the next).
"""

import asyncio
from typing import Any

import httpx
import pytest
from maps.conftest import LIVE_TIMEOUT_MS, City, shot, sign_in

pytestmark = pytest.mark.slow
FLOW: dict[str, Any] = {}
# Two reports of one overflowing bin, 2 km apart: too far for the hub to merge them itself.
BIN_A = (120.765, 32.085)
BIN_B = (120.785, 32.080)


async def big_screen(browser: Any, city: City, width: int = 1920, height: int = 1080,
                     theme: str = "") -> Any:
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(city.maps + "/" + (f"#theme={theme}" if theme else ""))
    await sign_in(page, "leader", city.passwords["leader"])
    await page.wait_for_function("() => window.__cityos && window.__cityos.vehicles() > 0",
                                 timeout=LIVE_TIMEOUT_MS)
    return page


async def get(city: City, path: str, username: str) -> Any:
    async with httpx.AsyncClient(base_url=city.maps, timeout=30) as client:
        response = await client.get(path, headers=city.headers(username))
    assert response.status_code == 200, response.text
    return response.json()


async def figure(page: Any, figure_id: str) -> str:
    text: str = await page.locator(f"[data-figure={figure_id}] .figure-value").inner_text()
    return text.strip()


async def test_overall_map_shows_live_vehicles_and_cases(city: City, browser: Any) -> None:
    FLOW["a"] = city.report("小区门口垃圾桶满了溢出来臭气熏天", *BIN_A, category="0101")
    FLOW["b"] = city.report("路边垃圾堆了好几天没人清理", *BIN_B, category="0101",
                            minutes_ago=3)
    assert FLOW["a"]["case_id"] != FLOW["b"]["case_id"]
    page = await big_screen(browser, city)
    await page.wait_for_function("() => window.__cityos.cases() >= 2", timeout=LIVE_TIMEOUT_MS)
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=open_cases] .figure-value')"
        ".textContent.trim() !== '—'")
    first = await page.evaluate("() => window.__cityos.board().at")
    # The figures are pushed again as the vehicles move.
    await page.wait_for_function(f"() => window.__cityos.board().at !== {first!r}",
                                 timeout=LIVE_TIMEOUT_MS)
    vehicles = await page.evaluate("() => window.__cityos.vehicles()")
    assert vehicles >= 100
    assert int(await figure(page, "vehicles")) >= 100
    FLOW["open_before"] = int(await figure(page, "open_cases"))
    assert FLOW["open_before"] >= 2
    assert await page.locator(".chart canvas").count() >= 4
    assert await page.locator("[data-count=cases]").inner_text() != "0"
    await page.screenshot(path=shot("big-overall"))
    await page.close()


async def test_thematic_map_switches(city: City, browser: Any) -> None:
    page = await big_screen(browser, city)
    await page.click("button[data-theme=traffic]")
    await page.wait_for_selector("[data-figure=speed]")
    assert "交通运行" in await page.locator(".bs-title").inner_text()
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=online] .figure-value')"
        ".textContent.trim() !== '—'", timeout=LIVE_TIMEOUT_MS)
    assert await page.locator("[data-layer=density]").count() == 1
    assert await page.locator("[data-figure=open_cases]").count() == 0
    await page.wait_for_timeout(1500)
    await page.screenshot(path=shot("big-traffic"))
    await page.click("button[data-theme=environment]")
    await page.wait_for_selector("[data-figure=over]")
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=sites] .figure-value')"
        ".textContent.trim() !== '0'", timeout=LIVE_TIMEOUT_MS)
    await page.screenshot(path=shot("big-environment"))
    await page.close()


async def test_box_select_lists_what_is_inside(city: City, browser: Any) -> None:
    page = await big_screen(browser, city, theme="emergency")
    assert await page.locator(".wartime-flag").count() == 1
    await page.click("button[data-action=draw]")
    box = await page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45
    corners = [(cx - 180, cy - 150), (cx + 180, cy - 150), (cx + 180, cy + 150),
               (cx - 180, cy + 150)]
    for x, y in corners:
        await page.mouse.click(x, y)
        await page.wait_for_timeout(250)
    await page.mouse.click(*corners[0])  # back on the first point: the polygon is closed
    panel = page.locator("[data-testid=selection]")
    await panel.wait_for(state="visible")
    await page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=selection-total]')?.textContent) > 0",
        timeout=LIVE_TIMEOUT_MS)
    groups = await page.locator(".sel-group").evaluate_all(
        "els => els.map(e => e.dataset.group)")
    assert "vehicle_gps" in groups, groups
    assert not any(g.startswith("roads") for g in groups)
    await page.screenshot(path=shot("big-wartime-select"))
    await page.close()


async def test_operator_merges_two_reports_and_dispatches(city: City, browser: Any) -> None:
    a, b = FLOW["a"]["case_id"], FLOW["b"]["case_id"]
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(city.maps + "/console")
    await sign_in(page, "admin", city.passwords["admin"])
    await page.wait_for_selector(f"tr.row[data-case='{b}']")
    await page.screenshot(path=shot("console-queue"))
    await page.click(f"tr.row[data-case='{b}']")
    await page.wait_for_selector(f"[data-case-page='{b}']")
    await page.fill("input[name=into]", str(a))
    await page.fill("input[name=reason]", "同一垃圾桶满溢，重复上报")
    await page.click("button[data-action=merge]")
    await page.wait_for_selector(f"[data-case-page='{a}']")
    await page.wait_for_selector("[data-report]")
    assert await page.locator("[data-report]").count() == 2
    await page.fill("input[name=reason]", "受理")
    await page.click("button[data-action=accept]")
    await page.wait_for_selector("[data-case-page] .case-head [data-status=accepted]")
    await page.click("button[data-action=dispatch]")  # the category's default unit
    await page.wait_for_selector("[data-case-page] .case-head [data-status=dispatched]")
    kinds = await page.locator("[data-testid=history] li").evaluate_all(
        "els => els.map(e => e.dataset.kind)")
    assert {"reports_merged_in", "accepted", "dispatched"} <= set(kinds)
    await page.screenshot(path=shot("console-case-dispatched"))
    await page.close()
    detail = await get(city, f"/api/cases/{a}", "admin")
    FLOW["unit"] = detail["case"]["handling_unit"]
    assert FLOW["unit"].startswith("HWC-")


async def test_field_worker_sees_only_own_tasks_and_handles_it(city: City, browser: Any
                                                               ) -> None:
    a = FLOW["a"]["case_id"]
    password = city.person("worker", FLOW["unit"], ["field_staff"])
    other = "HWC-329904" if FLOW["unit"] != "HWC-329904" else "HWC-329901"
    city.person("elsewhere", other, ["field_staff"])
    theirs = await get(city, "/api/field/tasks", "elsewhere")
    assert a not in [t["case_id"] for t in theirs["items"]]

    context = await browser.new_context(viewport={"width": 375, "height": 812},
                                        device_scale_factor=2, is_mobile=True, has_touch=True)
    page = await context.new_page()
    await page.goto(city.maps + "/field")
    await sign_in(page, "worker", password)
    await page.wait_for_selector(f"[data-task='{a}']")
    await page.screenshot(path=shot("field-tasks"))
    await page.click(f"[data-task='{a}']")
    await page.wait_for_selector(f"[data-task-page='{a}']")
    assert await page.locator("a.nav-link").get_attribute("href") is not None
    await page.click("button[data-step=accept]")
    await page.wait_for_selector("[data-task-page] .badge:has-text('处置中')")
    await page.fill("textarea[name=note]", "已清运，垃圾桶已清洗")
    await page.set_input_files("input[name=photo]", files=[{
        "name": "after.png", "mimeType": "image/png", "buffer": PNG}])
    await page.wait_for_function(
        "() => document.querySelector('input[name=photo_ref]').value.startsWith('photo:')")
    await page.click("button[data-step=handled]")
    await page.wait_for_selector("[data-task-page] .badge:has-text('已处置')")
    await page.screenshot(path=shot("field-task-handled"), full_page=True)
    await context.close()
    detail = await get(city, f"/api/cases/{a}", "admin")
    assert detail["case"]["status"] == "handled"
    assert "photo:sha256:" in detail["history"][-1]["reason"]


async def test_closing_the_case_changes_the_overall_figures(city: City, browser: Any) -> None:
    a = FLOW["a"]["case_id"]
    page = await big_screen(browser, city)
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=open_cases] .figure-value')"
        ".textContent.trim() !== '—'")
    before = int(await figure(page, "open_cases"))
    assert await figure(page, "on_time_rate") in ("—", "100%")
    for action in ("verify", "close"):
        async with httpx.AsyncClient(base_url=city.maps) as client:
            response = await client.post(f"/api/cases/{a}/{action}", json={"reason": "核查属实"},
                                         headers=city.headers("admin"))
        assert response.status_code == 200, response.text
    await page.wait_for_function(
        f"() => Number(document.querySelector('[data-figure=open_cases] .figure-value')"
        f".textContent.replace(/,/g, '')) === {before - 1}", timeout=LIVE_TIMEOUT_MS)
    await page.wait_for_function(
        "() => document.querySelector('[data-figure=on_time_rate] .figure-value')"
        ".textContent.trim() === '100%'", timeout=LIVE_TIMEOUT_MS)
    assert await page.locator(f".tick[data-case='{a}']").count() >= 1
    await page.screenshot(path=shot("big-after-close"))
    await page.close()


async def test_field_worker_reports_an_incident_where_they_stand(city: City, browser: Any
                                                                 ) -> None:
    context = await browser.new_context(
        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True,
        geolocation={"longitude": 120.93, "latitude": 32.02}, permissions=["geolocation"])
    page = await context.new_page()
    await page.goto(city.maps + "/field#report")
    await sign_in(page, "worker", city.passwords["worker"])
    await page.wait_for_function(
        "() => document.querySelector('[data-testid=where]')?.textContent.includes('120.93')")
    await page.fill("textarea[name=text]", "人行道上井盖缺失，有行人跌倒的危险")
    await page.click("button[type=submit]")
    receipt = await page.locator("[data-testid=receipt]").inner_text()
    case_id = int(receipt.rsplit("#", 1)[1])
    await page.screenshot(path=shot("field-report"))
    await context.close()
    detail = await get(city, f"/api/cases/{case_id}", "admin")
    assert detail["reports"][0]["channel"] == "grid_app"
    assert abs(detail["case"]["location"]["lon"] - 120.93) < 1e-6


async def test_data_steward_sees_registrations_and_dead_letters(city: City, browser: Any
                                                                ) -> None:
    # A record outside the city: ingestion rejects it into the dead letters.
    token = city.token("steward")
    bad = [{"plate": "苏F-BAD01", "ts": "2026-01-01T08:00:00+08:00", "lon": 100.0,
            "lat": 20.0}]
    async with httpx.AsyncClient(base_url=city.stack.urls["ingestion"], timeout=30) as client:
        await client.post("/datasets/vehicle_gps/records", json=bad,
                          headers={"Authorization": f"Bearer {token}"})
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    await page.goto(city.maps + "/console#data")
    await sign_in(page, "steward", city.passwords["steward"])
    await page.click("tr[data-dataset=vehicle_gps]")
    await page.wait_for_selector("[data-testid=dead-letters] table tbody tr")
    assert "outside" in (await page.locator("[data-testid=dead-letters]").inner_text()).lower()
    await page.screenshot(path=shot("console-data"))
    await page.close()


async def test_sign_in_is_required_and_roles_are_checked(city: City, browser: Any) -> None:
    async with httpx.AsyncClient(base_url=city.maps) as client:
        assert (await client.get("/api/cases")).status_code == 401
        assert (await client.get("/api/live")).status_code == 401
        worker = city.headers("worker")
        assert (await client.get("/api/board/overall", headers=worker)).status_code == 403
        assert (await client.post("/api/cases/1/dispatch", json={},
                                  headers=worker)).status_code == 403
    page = await browser.new_page()
    await page.goto(city.maps + "/console")
    await sign_in(page, "worker", city.passwords["worker"])
    await page.wait_for_selector(".signin-error:has-text('无权')")
    await page.close()


async def test_english_and_4k(city: City, browser: Any) -> None:
    page = await big_screen(browser, city, width=3840, height=2160)
    await page.click("button.lang")
    await page.wait_for_selector(".bs-title:has-text('Overall situation')")
    size = await page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('.figure-value')).fontSize)")
    assert size >= 48, size  # a 4K wall read from across the room
    await asyncio.sleep(1)
    await page.screenshot(path=shot("big-overall-4k-en"))
    await page.click("button.lang")  # back to Chinese for the other tests' pages
    await page.close()


# A 1×1 PNG: the photo a field worker takes (its reference is its SHA-256).
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360f8cf000000030101001bb2d4a00000000049454e44ae426082")
