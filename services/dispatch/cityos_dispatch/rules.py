"""Routing rules: which rule matches a case, and which units it names for the case's place.

Pure functions over the city's files and the rules; the SQL is in store.py. The seed is one
rule per category of categories.json (its department at its handling level), plus the joint
handling the issue names as its example (group rental housing: police lead, housing assists).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from cityos_contracts.dispatch import (
    PreviewCase,
    Priority,
    RouteDecision,
    Rule,
    RuleIn,
    RulePreview,
    RulePreviewIn,
)
from cityos_kit.city import City

COMMAND_CENTER = "CMD"
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
# Joint handling seeded with the rules: category -> departments assisting the lead.
SEED_ASSISTING: dict[str, list[str]] = {"1201": ["ZJJ"]}


class RuleError(ValueError):
    """A rule names something the city does not have."""


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    department: str
    handling_level: str
    priority: Priority
    accept_within_minutes: float
    dispose_within_hours: float


@dataclass(frozen=True)
class CaseFacts:
    """What routing looks at."""

    category: str | None
    district: str | None
    street: str | None
    at: datetime


class CityUnits:
    """The city's units, departments and categories, for resolving and escalating."""

    def __init__(self, city: City) -> None:
        self.units: dict[str, dict[str, Any]] = {u["id"]: u for u in city.units}
        self.departments = city.departments
        self.categories = {c["code"]: Category(
            c["code"], c["name"], c["department"], c["handling_level"], c["priority"],
            float(c["accept_within_minutes"]), float(c["dispose_within_hours"]))
            for c in city.categories}
        self.divisions: dict[str, dict[str, Any]] = {
            f["properties"]["code"]: f["properties"] for f in city.divisions["features"]}

    def priority_of(self, category: str | None) -> Priority:
        """A case's priority by its category's (normal when it has none)."""
        found = self.categories.get(category or "")
        return found.priority if found else "normal"

    def check_divisions(self, *codes: str | None) -> None:
        """Refuse district or street codes the city lacks."""
        for code in codes:
            if code is not None and code not in self.divisions:
                raise RuleError(f"unknown division {code!r}")

    def department_of(self, unit: str) -> str:
        found = self.units.get(unit)
        return str(found["department"]) if found else unit.split("-", 1)[0]

    def resolve(self, ref: str, level: str | None, district: str | None,
                street: str | None) -> str:
        """A unit id as it is; a department code at a level, for the case's place (the notes
        of categories.json): street office, district branch, or the city unit as fallback."""
        if level is None:
            if ref not in self.units:
                raise RuleError(f"unknown unit {ref!r}")
            return ref
        if ref == "JD" or level == "street":
            if street and f"JD-{street}" in self.units:
                return f"JD-{street}"
            if ref == "JD":
                return COMMAND_CENTER  # no street known: the center finds the office
        if ref not in self.departments:
            raise RuleError(f"unknown department {ref!r}")
        branch = f"{ref}-{district}"
        if level in ("district", "street") and district and \
                self.departments[ref].get("has_district_branches") and branch in self.units:
            return branch
        return ref if ref in self.units else COMMAND_CENTER

    def check(self, rule: RuleIn) -> None:
        """Refuse a rule naming units, departments or categories the city lacks."""
        for ref in (rule.lead, *rule.assisting):
            known = ref in self.departments or ref == "JD" if rule.level else ref in self.units
            if not known:
                what = "department" if rule.level else "unit"
                raise RuleError(f"unknown {what} {ref!r}")
        if rule.category is not None and rule.category not in self.categories:
            raise RuleError(f"unknown category {rule.category!r}")
        self.check_divisions(rule.district, rule.street)
        if (rule.from_hour is None) != (rule.to_hour is None):
            raise RuleError("give both from_hour and to_hour, or neither")

    def escalation_targets(self, unit: str) -> list[str]:
        """The unit's parent (if the parent is a unit: a street office's parent is a district
        code, not a unit) and the command center."""
        parent = (self.units.get(unit) or {}).get("parent")
        targets = [parent] if parent in self.units and parent != unit else []
        if COMMAND_CENTER not in targets and unit != COMMAND_CENTER:
            targets.append(COMMAND_CENTER)
        return targets


def _hour_matches(rule: RuleIn, hour: int) -> bool:
    if rule.from_hour is None or rule.to_hour is None:
        return True
    if rule.from_hour <= rule.to_hour:
        return rule.from_hour <= hour < rule.to_hour
    return hour >= rule.from_hour or hour < rule.to_hour  # over midnight


def specificity(rule: RuleIn) -> int:
    return (8 if rule.street else 0) + (4 if rule.district else 0) + \
        (2 if rule.from_hour is not None else 0) + (1 if rule.category else 0)


def matches(rule: RuleIn, case: CaseFacts, hour: int) -> bool:
    return rule.enabled and (rule.category is None or rule.category == case.category) and \
        (rule.district is None or rule.district == case.district) and \
        (rule.street is None or rule.street == case.street) and _hour_matches(rule, hour)


def choose(rules: list[Rule], case: CaseFacts, tz: ZoneInfo) -> Rule | None:
    """The matching rule of highest order, then most specific, then oldest."""
    hour = case.at.astimezone(tz).hour
    found = [r for r in rules if matches(r.rule, case, hour)]
    if not found:
        return None
    return min(found, key=lambda r: (-r.rule.order, -specificity(r.rule), r.rule_id))


def decide_by_rules(units: CityUnits, rules: list[Rule], case: CaseFacts, tz: ZoneInfo,
                    priority: Priority) -> RouteDecision:
    """The units the rules send a case to: the lead, and the assisting units with their own
    nearest unit. RuleError when no rule matches (the center routes it by hand)."""
    rule = choose(rules, case, tz)
    if rule is None:
        raise RuleError(f"no routing rule matches category {case.category} in "
                        f"{case.street or case.district or 'an unknown place'}")
    r = rule.rule
    lead = units.resolve(r.lead, r.level, case.district, case.street)
    assisting: list[str] = []
    # An assisting department joins with its own nearest unit: a street-level rule makes
    # the street office lead, not every department's (JD itself is the street office).
    level = "district" if r.level == "street" else r.level
    for ref in r.assisting:
        unit = units.resolve(ref, "street" if ref == "JD" and level else level,
                             case.district, case.street)
        if unit != lead and unit not in assisting:
            assisting.append(unit)
    return RouteDecision(lead=lead, assisting=assisting, priority=priority,
                         rule_id=rule.rule_id, rule_version=rule.version,
                         reason=f"rule {rule.rule_id} v{rule.version}: {r.description}",
                         level=(units.units.get(lead) or {}).get("level"))


def preview(units: CityUnits, rules: list[Rule], body: RulePreviewIn, tz: ZoneInfo
            ) -> RulePreview:
    """A dry run: where the case goes with `rules` (those in force) and with the edit the body
    names. RuleError for what the city lacks, or a `rule_id` not in force."""
    facts = _facts(units, body.case)
    priority = units.priority_of(facts.category)
    if body.rule is not None:
        units.check(body.rule)
    current = _decision(units, rules, facts, tz, priority)
    if body.rule is None and body.rule_id is None:
        return RulePreview(current=current)
    edited = [r for r in rules if r.rule_id != body.rule_id]
    draft_id = None
    if body.rule_id is not None:
        old = next((r for r in rules if r.rule_id == body.rule_id), None)
        if old is None:
            raise RuleError(f"no rule {body.rule_id} in force")
        if body.rule is not None:
            edited.append(Rule(old.rule_id, old.version + 1, body.rule, datetime.now(UTC),
                               "preview"))
    elif body.rule is not None:  # a new rule: the newest, so the last in a tie
        draft_id = max((r.rule_id for r in rules), default=0) + 1
        edited.append(Rule(draft_id, 1, body.rule, datetime.now(UTC), "preview"))
    with_rule = _decision(units, edited, facts, tz, priority)
    if draft_id is not None and with_rule.rule_id == draft_id:
        note = edited[-1].rule.description
        with_rule = msgspec.structs.replace(
            with_rule, rule_id=None, rule_version=None,
            reason="the new rule (not saved)" + (f": {note}" if note else ""))
    return RulePreview(current=current, with_rule=with_rule)


def _facts(units: CityUnits, case: PreviewCase) -> CaseFacts:
    if case.category is not None and case.category not in units.categories:
        raise RuleError(f"unknown category {case.category!r}")
    units.check_divisions(case.district, case.street)
    district = case.district
    if case.street is not None:
        parent = units.divisions[case.street].get("parent")
        if district is not None and district != parent:
            raise RuleError(f"street {case.street} is not in district {district}")
        district = parent
    return CaseFacts(case.category, district, case.street, case.at)


def _decision(units: CityUnits, rules: list[Rule], case: CaseFacts, tz: ZoneInfo,
              priority: Priority) -> RouteDecision:
    """`decide_by_rules`, with "no rule matches" as what follows: the center routes by hand."""
    try:
        return decide_by_rules(units, rules, case, tz, priority)
    except RuleError as exc:
        return RouteDecision(lead=COMMAND_CENTER, assisting=[], priority=priority,
                             reason=f"{exc}: the command center routes it by hand",
                             level="city")


def seed(units: CityUnits) -> list[RuleIn]:
    return [RuleIn(
        lead=c.department, level=c.handling_level, category=c.code,  # type: ignore[arg-type]
        assisting=SEED_ASSISTING.get(c.code, []),
        description=f"categories.json: {c.name}, {c.department} at {c.handling_level} level"
        + (" with " + ", ".join(SEED_ASSISTING[c.code]) + " assisting"
           if c.code in SEED_ASSISTING else ""))
        for c in units.categories.values()]


def raised(current: Priority, to: Priority) -> Priority:
    """The higher of two priorities."""
    return current if PRIORITIES.index(current) >= PRIORITIES.index(to) else to
