"""The fold from a case's events to its rounds: returns and re-dispatch, rework, reopening,
deadlines moved by extensions, escalations and ratings by round, duplicates and events out of
order."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cityos_contracts.cases import CaseEvent
from cityos_contracts.dispatch import DispatchEvent
from cityos_review.rounds import CaseFold, fold

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def ev(seq: int, kind: str, minutes: float, **fields: Any) -> CaseEvent:
    status = {"dispatched": "dispatched", "started": "handling", "handled": "handled",
              "returned": "returned", "verified": "verified", "closed": "closed",
              "reopened": "reopened", "reworked": "handling"}.get(kind, "classified")
    return CaseEvent(event_id=uuid.uuid4().hex, case_id=7, seq=seq, kind=kind,  # type: ignore[arg-type]
                     to_status=status, actor="t", actor_unit="CMD",  # type: ignore[arg-type]
                     at=T0 + timedelta(minutes=minutes), **fields)


def dv(kind: str, round_seq: int, minutes: float, **fields: Any) -> DispatchEvent:
    return DispatchEvent(event_id=uuid.uuid4().hex, case_id=7, kind=kind,  # type: ignore[arg-type]
                         at=T0 + timedelta(minutes=minutes), actor="system:dispatch",
                         round_seq=round_seq, **fields)


CASE = [ev(1, "received", 0), ev(2, "classified", 0, category="0201"), ev(3, "accepted", 1),
        ev(4, "dispatched", 2, unit="CGJ-329901"), ev(5, "returned", 10),
        ev(6, "dispatched", 12, unit="CGJ-329902"), ev(7, "started", 20), ev(8, "handled", 60),
        ev(9, "reworked", 70), ev(10, "handled", 90), ev(11, "verified", 95),
        ev(12, "closed", 100), ev(13, "reopened", 200)]
DISPATCH = [dv("routed", 4, 2, accept_due=T0 + timedelta(minutes=32),
               dispose_due=T0 + timedelta(hours=4)),
            dv("routed", 6, 12, accept_due=T0 + timedelta(minutes=42),
               dispose_due=T0 + timedelta(minutes=80)),
            dv("escalated", 6, 80), dv("extension_granted", 6, 81,
                                       dispose_due=T0 + timedelta(minutes=120)),
            dv("rated", 6, 150, score=2), dv("rated", 6, 151, score=4)]


def test_rounds_of_a_returned_reworked_reopened_case() -> None:
    first, second = fold(7, CASE, DISPATCH)
    assert (first.unit, first.returned, first.accepted_at, first.category) == \
        ("CGJ-329901", True, None, "0201")
    assert first.accept_due == T0 + timedelta(minutes=32)
    assert second.unit == "CGJ-329902" and not second.returned
    assert second.accepted_at == T0 + timedelta(minutes=20)
    assert second.handled_at == T0 + timedelta(minutes=90)  # the last handling counts
    assert second.dispose_due == T0 + timedelta(minutes=120)  # extended
    assert (second.escalations, second.closed, second.reopened) == (1, True, True)
    assert (second.ratings, second.score_sum) == (2, 6)


def test_duplicates_and_disorder_change_nothing() -> None:
    expected = fold(7, CASE, DISPATCH)
    state = CaseFold(7)
    shuffled = [CASE[i] for i in (0, 1, 2, 4, 3, 3, 5, 7, 6, 8, 9, 10, 12, 11)]
    for d in [DISPATCH[2], DISPATCH[2], *DISPATCH]:  # before their rounds, and twice
        state.add_dispatch_event(d)
    new = [state.add_case_event(e) for e in shuffled]
    state.finish()
    assert new.count(False) == 1  # the duplicate of seq 4
    assert list(state.rounds.values()) == expected
