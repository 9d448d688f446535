"""The one state machine of a case, and how a case is rebuilt from its events.

    received ──classify──▶ classified ──accept──▶ accepted ──dispatch──▶ dispatched
        │                      │                     │                     │  start
        │                      └──────reject─────────┴──▶ rejected         ▼
        │                                                              handling ◀─rework─┐
        └──merge (any open state)──▶ merged                                │ finish      │
                                                                           ▼             │
    returned ◀──return── dispatched/handling          verified ◀─verify── handled ───────┘
       │ (the center re-classifies, re-dispatches or rejects)  │ close
       ▼                                                        ▼
    dispatched                              reopened ◀─reopen── closed / rejected

A report that arrives confidently classified goes received → classified at once (two events).
Actions that do not change the status (re-classifying an accepted case, adding a report,
merging reports in, splitting them out) are events too: the history is every event.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from cityos_contracts.cases import CaseEvent

OPEN_STATUSES: Final = frozenset({"received", "classified", "accepted", "dispatched", "handling",
                                  "handled", "verified", "returned", "reopened"})
# Terminal unless reopened: a case in these takes no new reports by automatic merging.
FINAL_STATUSES: Final = frozenset({"merged", "rejected"})


@dataclass(frozen=True)
class Transition:
    kind: str  # the event kind it records
    sources: frozenset[str]
    target: str | None  # None: the status does not change


TRANSITIONS: Final[dict[str, Transition]] = {
    "classify": Transition("classified", frozenset(
        {"received", "classified", "accepted", "returned", "reopened"}), None),
    "accept": Transition("accepted", frozenset({"classified", "returned", "reopened"}),
                         "accepted"),
    "reject": Transition("rejected", frozenset(
        {"received", "classified", "accepted", "returned", "reopened"}), "rejected"),
    "dispatch": Transition("dispatched", frozenset({"accepted", "returned", "reopened"}),
                           "dispatched"),
    "start": Transition("started", frozenset({"dispatched"}), "handling"),
    "return": Transition("returned", frozenset({"dispatched", "handling"}), "returned"),
    "finish": Transition("handled", frozenset({"dispatched", "handling"}), "handled"),
    "verify": Transition("verified", frozenset({"handled"}), "verified"),
    "rework": Transition("reworked", frozenset({"handled", "verified"}), "handling"),
    "close": Transition("closed", frozenset({"verified"}), "closed"),
    "reopen": Transition("reopened", frozenset({"closed", "rejected"}), "reopened"),
    "merge": Transition("merged", frozenset(OPEN_STATUSES), "merged"),
    # Recorded by dispatch on the case's history; the status does not change.
    "escalate": Transition("escalated", frozenset(OPEN_STATUSES), None),
    "note": Transition("noted", frozenset(OPEN_STATUSES), None),
}


class InvalidTransition(Exception):
    """The action is not allowed from the case's current status."""


def next_status(action: str, current: str) -> str:
    """The status after `action`, or InvalidTransition."""
    transition = TRANSITIONS[action]
    if current not in transition.sources:
        allowed = ", ".join(sorted(transition.sources))
        raise InvalidTransition(f"cannot {action} a case that is {current} (only from {allowed})")
    if action == "classify" and current == "received":
        return "classified"
    return transition.target or current


@dataclass(frozen=True)
class CaseState:
    """What the events say about a case: enough to check the store against the stream."""

    case_id: int
    version: int = 0
    status: str = "received"
    category: str | None = None
    classified_by: str | None = None
    handling_unit: str | None = None
    merged_into: int | None = None
    closed_at: datetime | None = None
    report_ids: frozenset[int] = field(default_factory=frozenset)


def apply(state: CaseState, event: CaseEvent) -> CaseState:
    """The state after one event (events must come in `seq` order)."""
    if event.seq != state.version + 1:
        raise ValueError(f"case {state.case_id}: event seq {event.seq} after {state.version}")
    reports = set(state.report_ids)
    if event.report_id is not None and event.kind in ("received", "report_added"):
        reports.add(event.report_id)
    if event.kind in ("reports_merged_in", "split_from"):
        reports |= set(event.report_ids)
    if event.kind in ("split", "merged"):
        reports -= set(event.report_ids)
    changes: dict[str, object] = {"version": event.seq, "status": event.to_status,
                                  "report_ids": frozenset(reports)}
    if event.category is not None:
        changes |= {"category": event.category, "classified_by": event.classified_by}
    if event.unit is not None:
        changes["handling_unit"] = event.unit
    if event.kind == "merged":
        changes["merged_into"] = event.other_case_id
    if event.kind == "closed":
        changes["closed_at"] = event.at
    if event.kind == "reopened":
        changes["closed_at"] = None
    return replace(state, **changes)  # type: ignore[arg-type]


def fold(case_id: int, events: list[CaseEvent]) -> CaseState:
    state = CaseState(case_id)
    for event in sorted(events, key=lambda e: e.seq):
        state = apply(state, event)
    return state
