"""Deadlines from the category, a reminder before and an escalation after, to the unit's
parent and the command center, recorded on NATS and on the case."""

import asyncio
from datetime import datetime
from typing import Any

from dispatch.conftest import (
    SCALE,
    UNIT_STAFF,
    Watcher,
    accepted_case,
    assignment,
    eventually,
    spot,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_dispatch.rules import CityUnits
from cityos_kit.auth import LocalIssuer
from cityos_kit.city import City
from cityos_kit.config import load_settings


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_deadlines_come_from_the_category(events: AsyncTestClient[Any],
                                                dispatch: AsyncTestClient[Any]) -> None:
    case_id = await accepted_case(events, "工地半夜还在打桩吵得睡不着", spot(), "0501")
    a = await assignment(dispatch, case_id)
    start = _at(a["dispatched_at"])
    # 0501 night construction: 30 minutes to accept, 12 hours to dispose, normal priority.
    assert a["priority"] == "normal" and a["lead"].startswith("ZJJ-")
    assert abs((_at(a["accept_due"]) - start).total_seconds() - 30 * 60 * SCALE) < 1e-3
    assert abs((_at(a["dispose_due"]) - start).total_seconds() - 12 * 3600 * SCALE) < 1e-3


async def test_a_missed_acceptance_is_reminded_then_escalated(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher) -> None:
    case_id = await accepted_case(events, "主干道上有一大片玻璃碴", spot(), "0102")
    a = await assignment(dispatch, case_id)  # 0102: 15 min to accept -> 1.8 s here

    async def escalated() -> list[Any]:
        return [e for e in watcher.dispatch_events(case_id) if e.kind == "escalated"]

    (escalation,) = await eventually(escalated, timeout=15)
    due = _at(a["accept_due"])
    late = (escalation.at - due).total_seconds()
    assert 0 <= late < 1.0, late  # the timer loop ticks every 50 ms
    assert escalation.deadline == "accept" and escalation.unit == a["lead"]
    assert escalation.escalated_to == ["HWC", "CMD"]  # the branch's city unit, the center
    reminded = [e for e in watcher.dispatch_events(case_id) if e.kind == "reminded"]
    assert reminded and reminded[0].deadline == "accept" and reminded[0].at < escalation.at
    # The event goes out before the timer's transaction (hub call included) commits.
    async def on_case() -> list[Any]:
        history = (await events.get(f"/cases/{case_id}")).json()["history"]
        return [e for e in history if e["kind"] == "escalated"]

    (on_hub,) = await eventually(on_case)
    assert "HWC, CMD" in on_hub["reason"]
    history = (await events.get(f"/cases/{case_id}")).json()["history"]
    assert history[-1]["to_status"] == "dispatched"  # escalation changes no status

    async def listed() -> set[int]:
        found = (await dispatch.get("/escalations", params={"to": "HWC"})).json()
        return {e["case_id"] for e in found} & {case_id}

    await eventually(listed)
    assert (await dispatch.get(f"/assignments/{case_id}")).json()["escalations"] >= 1


async def test_an_accepted_case_is_not_escalated_for_acceptance(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any], watcher: Watcher,
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "路口的井盖不见了只剩个洞", spot(), "0301")
    a = await assignment(dispatch, case_id)
    assert a["lead"] == "SWJ"  # a city-level category
    unit = token(events_issuer, unit="SWJ", scopes=UNIT_STAFF)
    assert (await dispatch.post(f"/assignments/{case_id}/accept", headers=unit, json={})
            ).status_code == 200
    await asyncio.sleep((_at(a["accept_due"]) - _at(a["dispatched_at"])).total_seconds() + 0.5)
    kinds = [(e.kind, e.deadline) for e in watcher.dispatch_events(case_id)]
    assert ("escalated", "accept") not in kinds


def test_escalation_goes_to_the_parent_unit_and_the_center() -> None:
    units = CityUnits(City(load_settings("test").city_dir))
    assert units.escalation_targets("CGJ-329901") == ["CGJ", "CMD"]
    assert units.escalation_targets("SWJ") == ["CMD"]
    # A street office's parent is a district code, not a unit: the center.
    assert units.escalation_targets("JD-329901001") == ["CMD"]
    assert units.escalation_targets("CMD") == []
