"""The routing dry run (`POST /rules/preview`): where a case would go with the rules in force
and with an edited, new, disabled or removed rule, by the function the dispatcher routes with;
bad input is a 4xx with its reason, and nothing is ever written."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.conftest import UNIT_STAFF, accepted_case, assignment, spot, token
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer

TZ = ZoneInfo("Asia/Shanghai")
BY_DAY = datetime(2026, 11, 21, 10, 0, tzinfo=TZ).isoformat()


async def preview(dispatch: AsyncTestClient[Any], case: dict[str, Any], **edit: Any
                  ) -> dict[str, Any]:
    response = await dispatch.post("/rules/preview", json={"case": {"at": BY_DAY, **case},
                                                           **edit})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def seeded(dispatch: AsyncTestClient[Any], category: str) -> dict[str, Any]:
    rules = (await dispatch.get("/rules")).json()
    found: dict[str, Any] = next(r for r in rules if r["rule"]["category"] == category
                                 and r["updated_by"] == "system:seed")
    return found


async def test_without_an_edit_the_category_default(dispatch: AsyncTestClient[Any]) -> None:
    garbage = await seeded(dispatch, "0101")  # exposed garbage: sanitation, district level
    answer = await preview(dispatch, {"category": "0101", "district": "329902"})
    assert answer["with_rule"] is None
    current = answer["current"]
    assert (current["lead"], current["assisting"], current["level"]) == \
        ("HWC-329902", [], "district")
    assert (current["rule_id"], current["rule_version"]) == \
        (garbage["rule_id"], garbage["version"])
    assert current["priority"] == "normal" and current["reason"].startswith(
        f"rule {garbage['rule_id']} v{garbage['version']}: categories.json")
    # A street alone implies its district; street-level categories go to the street office.
    posters = (await preview(dispatch, {"category": "0103", "street": "329902001"}))["current"]
    assert (posters["lead"], posters["level"]) == ("JD-329902001", "street")
    # Joint handling: group rentals, police lead and housing assists, each the district's.
    rental = (await preview(dispatch, {"category": "1201", "district": "329903"}))["current"]
    assert (rental["lead"], rental["assisting"]) == ("GAJ-329903", ["ZJJ-329903"])
    # No category: no rule matches, the command center routes it by hand.
    unknown = (await preview(dispatch, {"district": "329903"}))["current"]
    assert (unknown["lead"], unknown["rule_id"]) == ("CMD", None)
    assert "no routing rule matches" in unknown["reason"]


async def test_preview_is_what_the_dispatcher_does(events: AsyncTestClient[Any],
                                                   dispatch: AsyncTestClient[Any]) -> None:
    case_id = await accepted_case(events, "路边垃圾堆了好几天没人清理", spot(), "0101")
    a = await assignment(dispatch, case_id)
    answer = await preview(dispatch, {"category": "0101", "district": a["district"],
                                      "street": a["street"], "at": a["dispatched_at"]})
    current = answer["current"]
    assert (current["lead"], current["assisting"], current["rule_id"],
            current["rule_version"], current["priority"]) == \
        (a["lead"], a["assisting"], a["rule_id"], a["rule_version"], a["priority"])


async def test_a_narrower_rule_changes_only_with_rule(dispatch: AsyncTestClient[Any]) -> None:
    before = (await dispatch.get("/rules")).json()
    case = {"category": "0101", "street": "329903002"}
    rule = {"lead": "CGJ", "level": "district", "category": "0101", "district": "329903",
            "assisting": ["JD"], "description": "西湖区暴露垃圾由城管牵头"}
    answer = await preview(dispatch, case, rule=rule)
    assert answer["current"]["lead"] == "HWC-329903"
    with_rule = answer["with_rule"]
    assert (with_rule["lead"], with_rule["assisting"]) == ("CGJ-329903", ["JD-329903002"])
    assert (with_rule["rule_id"], with_rule["rule_version"]) == (None, None)  # not saved
    assert with_rule["reason"] == "the new rule (not saved): 西湖区暴露垃圾由城管牵头"
    # Elsewhere the narrower rule does not match: both the same.
    other = await preview(dispatch, {"category": "0101", "district": "329901"}, rule=rule)
    assert other["with_rule"] == other["current"]
    # At night only: by day the rules in force still decide.
    night = await preview(dispatch, case, rule={**rule, "from_hour": 22, "to_hour": 6})
    assert night["with_rule"] == night["current"]
    # Editing a rule in force: the version it would become.
    garbage = await seeded(dispatch, "0101")
    edited = await preview(dispatch, case, rule_id=garbage["rule_id"],
                           rule={**garbage["rule"], "lead": "CGJ"})
    assert (edited["with_rule"]["lead"], edited["with_rule"]["rule_id"],
            edited["with_rule"]["rule_version"]) == \
        ("CGJ-329903", garbage["rule_id"], garbage["version"] + 1)
    assert (await dispatch.get("/rules")).json() == before  # nothing written


async def test_disabled_and_removed_rules(dispatch: AsyncTestClient[Any]) -> None:
    garbage = await seeded(dispatch, "0101")
    case = {"category": "0101", "district": "329904"}
    # A disabled draft changes nothing, even ordered first.
    draft = {"lead": "CMD", "category": "0101", "order": 100, "enabled": False}
    answer = await preview(dispatch, case, rule=draft)
    assert answer["with_rule"] == answer["current"]
    assert answer["current"]["rule_id"] == garbage["rule_id"]
    # Disabling the rule in force, or removing it: nothing matches, the center routes it.
    for edit in ({"rule_id": garbage["rule_id"], "rule": {**garbage["rule"], "enabled": False}},
                 {"rule_id": garbage["rule_id"]}):
        answer = await preview(dispatch, case, **edit)
        assert answer["current"]["lead"] == "HWC-329904"
        assert (answer["with_rule"]["lead"], answer["with_rule"]["rule_id"]) == ("CMD", None)
        assert "no routing rule matches category 0101 in 329904" in \
            answer["with_rule"]["reason"]
    # A saved rule that is disabled is not in force: enabling it is what the preview shows.
    saved = await dispatch.post("/rules", json={**draft, "district": "329904",
                                                "description": "停用的规则"})
    assert saved.status_code == 201, saved.text
    rule_id = saved.json()["rule_id"]
    answer = await preview(dispatch, case, rule_id=rule_id,
                           rule={**saved.json()["rule"], "enabled": True})
    assert answer["current"]["rule_id"] == garbage["rule_id"]
    assert (answer["with_rule"]["lead"], answer["with_rule"]["rule_id"],
            answer["with_rule"]["rule_version"]) == ("CMD", rule_id, 2)
    assert (await dispatch.delete(f"/rules/{rule_id}")).status_code == 200


async def test_bad_input_is_refused_with_its_reason(dispatch: AsyncTestClient[Any],
                                                    events_issuer: LocalIssuer) -> None:
    before = (await dispatch.get("/rules")).json()
    case = {"category": "0101", "district": "329902", "at": BY_DAY}

    async def refused(body: dict[str, Any], status: int, reason: str) -> None:
        response = await dispatch.post("/rules/preview", json=body)
        assert response.status_code == status, response.text
        assert reason in response.text, response.text

    await refused({"case": case, "rule": {"lead": "NOPE-1", "category": "0101"}}, 422,
                  "unknown unit 'NOPE-1'")
    await refused({"case": case, "rule": {"lead": "NOPE", "level": "district"}}, 422,
                  "unknown department 'NOPE'")
    await refused({"case": {**case, "at": "2026-11-21T10:00:00"}}, 400, "with a timezone")
    await refused({"case": {**case, "category": "9999"}}, 422, "unknown category '9999'")
    await refused({"case": {**case, "category": "garbage"}}, 400, "category")
    await refused({"case": {**case, "district": "329999"}}, 422, "unknown division '329999'")
    await refused({"case": {**case, "street": "329901001"}}, 422,
                  "street 329901001 is not in district 329902")
    await refused({"case": case, "rule": {"lead": "CGJ", "level": "district",
                                          "district": "329999"}}, 422, "unknown division")
    await refused({"case": case, "rule_id": 987654}, 404, "no rule 987654 in force")
    await refused({"case": case, "surprise": 1}, 400, "surprise")
    await refused({"rule": {"lead": "CMD"}}, 400, "case")
    unit = token(events_issuer, unit="CGJ", scopes=UNIT_STAFF)
    response = await dispatch.post("/rules/preview", json={"case": case}, headers=unit)
    assert response.status_code == 403, response.text
    assert (await dispatch.get("/rules")).json() == before
