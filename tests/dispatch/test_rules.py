"""Routing rules: seeded from the city's categories, editable and versioned through the API,
matched by category, place and hour; a dispatch names the rule version that chose it."""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dispatch.conftest import UNIT_STAFF, accepted_case, assignment, spot, token
from litestar.testing import AsyncTestClient

from cityos_contracts.dispatch import Rule, RuleIn
from cityos_dispatch.rules import CaseFacts, CityUnits, choose, seed
from cityos_kit.auth import LocalIssuer
from cityos_kit.city import City
from cityos_kit.config import load_settings

UNITS = CityUnits(City(load_settings("test").city_dir))
TZ = ZoneInfo("Asia/Shanghai")


def rule(rule_id: int, **fields: Any) -> Rule:
    return Rule(rule_id=rule_id, version=1, rule=RuleIn(**fields),
                updated_at=datetime.now(UTC), updated_by="test")


def test_the_seed_follows_the_categories_notes() -> None:
    rules = [Rule(i + 1, 1, r, datetime.now(UTC), "seed") for i, r in enumerate(seed(UNITS))]
    assert len(rules) == 33

    def lead(category: str, district: str | None, street: str | None) -> str:
        found = choose(rules, CaseFacts(category, district, street, datetime.now(UTC)), TZ)
        assert found is not None
        return UNITS.resolve(found.rule.lead, found.rule.level, district, street)

    assert lead("0101", "329902", "329902001") == "HWC-329902"  # district branch
    assert lead("0103", "329902", "329902001") == "JD-329902001"  # street office
    assert lead("0301", "329902", "329902001") == "SWJ"  # city level
    assert lead("0603", "329902", None) == "STHJJ"
    assert lead("1101", "329903", None) == "SCJGJ-329903"
    assert lead("0401", "329903", None) == "JTJ"  # no branches: the city unit
    assert lead("0103", "329903", None) == "CGJ-329903"  # street unknown: the district
    assert lead("1202", None, None) == "CMD"  # a street office, but no street known


def test_order_then_specificity_then_age() -> None:
    at_night = datetime(2026, 11, 21, 23, 30, tzinfo=TZ)
    by_day = datetime(2026, 11, 21, 10, 0, tzinfo=TZ)
    rules = [rule(1, lead="CGJ", level="district", category="0501"),
             rule(2, lead="ZJJ", level="district", category="0501"),
             rule(3, lead="GAJ", level="district", category="0501", from_hour=22, to_hour=6),
             rule(4, lead="CMD", category="0501", district="329904"),
             rule(5, lead="SCJGJ", level="city", category="0501", order=5, enabled=False)]
    facts = CaseFacts("0501", "329901", "329901001", by_day)
    assert choose(rules, facts, TZ).rule_id == 1  # type: ignore[union-attr]
    night = CaseFacts("0501", "329901", "329901001", at_night)
    assert choose(rules, night, TZ).rule_id == 3  # type: ignore[union-attr]
    xihu = CaseFacts("0501", "329904", None, at_night)
    assert choose(rules, xihu, TZ).rule_id == 4  # type: ignore[union-attr]
    assert choose(rules, CaseFacts("0101", None, None, by_day), TZ) is None


async def test_rules_are_edited_and_versioned(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    rules = (await dispatch.get("/rules")).json()
    seeded = next(r for r in rules if r["rule"]["category"] == "1003")
    assert seeded["version"] == 1 and seeded["updated_by"] == "system:seed"
    # Unpaid wages: the street office of the place leads, the HR bureau assists.
    changed = await dispatch.put(f"/rules/{seeded['rule_id']}", params={"expected_version": 1},
                                 json={**seeded["rule"], "lead": "JD", "level": "street",
                                       "assisting": ["RSJ"], "description": "街道牵头"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    stale = await dispatch.put(f"/rules/{seeded['rule_id']}", params={"expected_version": 1},
                               json=seeded["rule"])
    assert stale.status_code == 409
    unit = token(events_issuer, unit="CGJ", scopes=UNIT_STAFF)
    assert (await dispatch.put(f"/rules/{seeded['rule_id']}", json=seeded["rule"],
                               headers=unit)).status_code == 403

    lon, lat = spot()
    case_id = await accepted_case(events, "公司拖欠了我们三个月工资不发", (lon, lat), "1003")
    a = await assignment(dispatch, case_id)
    street = (await events.get(f"/cases/{case_id}")).json()["case"]["location"]["street"]
    assert (a["lead"], a["assisting"]) == (f"JD-{street}", ["RSJ"])
    assert (a["rule_id"], a["rule_version"]) == (seeded["rule_id"], 2)
    preview = (await dispatch.get(f"/route/{case_id}")).json()
    assert preview["lead"] == f"JD-{street}" and preview["rule_version"] == 2

    first = (await dispatch.get(f"/rules/{seeded['rule_id']}", params={"version": 1})).json()
    assert first["rule"]["lead"] == "RSJ" and first["version"] == 1
    versions = (await dispatch.get(f"/rules/{seeded['rule_id']}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2]
    deleted = await dispatch.delete(f"/rules/{seeded['rule_id']}")
    assert deleted.status_code == 200 and deleted.json()["version"] == 3
    assert seeded["rule_id"] not in {r["rule_id"] for r in (await dispatch.get("/rules")).json()}
    restored = await dispatch.post("/rules", json=seeded["rule"])
    assert restored.status_code == 201 and restored.json()["version"] == 1
    assert (await dispatch.get("/rules/987654")).status_code == 404
