"""Routing rules: which rule matches a case, and which units it names for the case's place.

Pure functions over the city's files and the rules; the SQL is in store.py. The seed is one
rule per category of categories.json (its department at its handling level), plus the joint
handling the issue names as its example (group rental housing: police lead, housing assists).
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from cityos_contracts.dispatch import Priority, Rule, RuleIn
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
