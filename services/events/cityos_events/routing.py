"""Which unit a case goes to by default, from its category's handling level and its place
(the rule in categories.json's notes); the operator may name another."""

from typing import Any

from cityos_contracts.cases import Location
from cityos_events.store import COMMAND_CENTER, CategoryInfo


def default_unit(info: CategoryInfo, location: Location, departments: dict[str, Any],
                 units: set[str]) -> str:
    """street: the street office of the place; district: the department's branch in the
    place's district; city (or no branch, or no place): the department's own unit."""
    if info.handling_level == "street" and f"JD-{location.street}" in units:
        return f"JD-{location.street}"
    if info.handling_level == "district" and \
            departments.get(info.department, {}).get("has_district_branches") and \
            f"{info.department}-{location.district}" in units:
        return f"{info.department}-{location.district}"
    return info.department if info.department in units else COMMAND_CENTER
