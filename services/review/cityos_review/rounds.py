"""From a case's events to its rounds of handling: what the figures count.

A round starts with the hub's `dispatched` event (its `seq` names the round) and belongs to the
unit dispatched to. Case events, in `seq` order, say when the unit accepted (`started`),
handled, or returned it, and whether the case was closed after the unit handled it and then
reopened. Dispatch events attach by `round_seq`: deadlines (`routed`, moved by an extension or
an emergency), escalations and ratings. The fold is incremental and order-tolerant between the
two streams, so a rebuild can read each stream once, in order.
"""

from dataclasses import dataclass, field
from datetime import datetime

from cityos_contracts.cases import CaseEvent
from cityos_contracts.dispatch import DispatchEvent


@dataclass
class Round:
    case_id: int
    round_seq: int
    unit: str
    dispatched_at: datetime
    category: str | None
    accept_due: datetime | None = None
    dispose_due: datetime | None = None
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    returned: bool = False
    escalations: int = 0
    closed: bool = False
    reopened: bool = False
    ratings: int = 0
    score_sum: int = 0


@dataclass
class CaseFold:
    case_id: int
    version: int = 0
    category: str | None = None
    rounds: dict[int, Round] = field(default_factory=dict)
    current: Round | None = None  # the round the unit works in
    handled_by: Round | None = None  # the round whose handling a closure closes
    # Dispatch events that came before their round (another stream, read first).
    waiting: list[DispatchEvent] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # dispatch event ids (a redelivery is one)
    early: dict[int, CaseEvent] = field(default_factory=dict)  # case events ahead of a gap

    def add_case_event(self, e: CaseEvent) -> bool:
        """Fold one event (in `seq` order: an early one waits for the gap to fill); False if it
        was seen before (a republished event)."""
        if e.seq <= self.version or e.seq in self.early:
            return False
        self.early[e.seq] = e
        while self.version + 1 in self.early:
            self._apply(self.early.pop(self.version + 1))
        return True

    def finish(self) -> None:
        """Apply what still waits behind a gap that will not fill (the stream lost it)."""
        for seq in sorted(self.early):
            self._apply(self.early.pop(seq))

    def _apply(self, e: CaseEvent) -> None:
        self.version = e.seq
        if e.category is not None:
            self.category = e.category
        kind, r = e.kind, self.current
        if kind == "dispatched" and e.unit:
            self.current = self.rounds[e.seq] = Round(self.case_id, e.seq, e.unit, e.at,
                                                      self.category)
            if self.waiting:
                waiting, self.waiting = self.waiting, []
                for d in waiting:
                    self._attach(d)
        elif kind == "started" and r is not None:
            r.accepted_at = r.accepted_at or e.at
        elif kind == "handled" and r is not None:
            r.handled_at = e.at
            self.handled_by = r
        elif kind == "reworked" and r is not None:
            self.handled_by = None
        elif kind == "returned" and r is not None:
            r.returned, self.current = True, None
        elif kind == "closed" and self.handled_by is not None:
            self.handled_by.closed = True
            self.current = None
        elif kind == "reopened":
            if self.handled_by is not None and self.handled_by.closed:
                self.handled_by.reopened = True
            self.current = self.handled_by = None
        elif kind in ("rejected", "merged"):
            self.current = None

    def add_dispatch_event(self, d: DispatchEvent) -> bool:
        """Fold one event; False if it was seen before (a redelivery)."""
        if d.event_id in self.seen:
            return False
        self.seen.add(d.event_id)
        self._attach(d)
        return True

    def _attach(self, d: DispatchEvent) -> None:
        if d.round_seq is None:
            return
        r = self.rounds.get(d.round_seq)
        if r is None:
            if d.round_seq > self.version:
                self.waiting.append(d)
            return
        if d.kind == "routed":
            r.accept_due, r.dispose_due = d.accept_due, d.dispose_due
        elif d.kind == "priority_raised":
            r.accept_due = d.accept_due or r.accept_due
            r.dispose_due = d.dispose_due or r.dispose_due
        elif d.kind == "extension_granted" and d.dispose_due is not None:
            r.dispose_due = d.dispose_due
        elif d.kind == "escalated":
            r.escalations += 1
        elif d.kind == "rated" and d.score is not None:
            r.ratings += 1
            r.score_sum += d.score


def fold(case_id: int, case_events: list[CaseEvent], dispatch_events: list[DispatchEvent]
         ) -> list[Round]:
    state = CaseFold(case_id)
    for e in sorted(case_events, key=lambda e: e.seq):
        state.add_case_event(e)
    state.finish()
    for d in dispatch_events:
        state.add_dispatch_event(d)
    return list(state.rounds.values())
