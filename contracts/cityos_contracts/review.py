"""Efficiency review (行政问效): how each unit and department performed, and what data each
department contributes. Figures are computed from the case-event and dispatch-event streams
and can be rebuilt from them.

A *round* is one dispatch of a case to a unit (a returned case re-dispatched is a second round).
Periods select rounds by their dispatch time, [start, end). Times are in seconds.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

Figure = Literal["received", "accepted", "accepted_on_time", "accepted_late", "not_accepted",
                 "disposed", "disposed_on_time", "disposed_late", "returned", "escalated",
                 "reopened", "rated"]
FIGURES: tuple[str, ...] = ("received", "accepted", "accepted_on_time", "accepted_late",
                            "not_accepted", "disposed", "disposed_on_time", "disposed_late",
                            "returned", "escalated", "reopened", "rated")


class UnitFigures(Struct, frozen=True, tag_field="schema", tag="cityos.unit_figures.v1"):
    """One unit's (or, with `unit` None, one department's) figures over a period."""

    department: str
    start: datetime
    end: datetime
    unit: str | None
    received: int  # rounds dispatched to it
    accepted: int  # rounds it accepted (started)
    accepted_on_time: int
    disposed: int  # rounds it reported handled
    disposed_on_time: int
    returns: int
    escalations: int  # deadline escalations (acceptance and disposal)
    closed: int  # rounds whose case was closed after this unit handled it
    reopened: int
    reopen_rate: float | None  # reopened / closed
    accept_on_time_rate: float | None  # accepted_on_time / received
    dispose_on_time_rate: float | None  # disposed_on_time / received
    accept_time_avg_s: float | None = None  # dispatch -> accepted
    accept_time_p90_s: float | None = None
    dispose_time_avg_s: float | None = None  # dispatch -> handled
    dispose_time_p90_s: float | None = None
    satisfaction_avg: float | None = None  # 1..5
    ratings: int = 0


class Contribution(Struct, frozen=True, tag_field="schema", tag="cityos.contribution.v1"):
    """A department's data contribution over a period (from ingestion's metrics)."""

    department: str
    start: datetime
    end: datetime
    datasets: int
    received: int  # records offered
    accepted: int  # volume: valid records kept
    validity_rate: float | None  # accepted / received
    completeness: float | None  # mean share of optional fields present (weighted by volume)
    freshness_mean_s: float | None  # mean lag from observation to arrival (weighted)
    freshness_max_s: float | None


class RankingWeights(Struct, frozen=True, forbid_unknown_fields=True,
                     tag_field="schema", tag="cityos.ranking_weights.v1"):
    """Weights of the ranking score's components (each component is a rate in [0, 1]);
    the score is 100 × Σ weight × component / Σ weight of the components that have a value."""

    accept_on_time: Annotated[float, Meta(ge=0, le=100)] = 20.0
    dispose_on_time: Annotated[float, Meta(ge=0, le=100)] = 30.0
    no_return: Annotated[float, Meta(ge=0, le=100)] = 10.0
    no_escalation: Annotated[float, Meta(ge=0, le=100)] = 10.0
    no_reopen: Annotated[float, Meta(ge=0, le=100)] = 10.0
    satisfaction: Annotated[float, Meta(ge=0, le=100)] = 15.0
    data_contribution: Annotated[float, Meta(ge=0, le=100)] = 5.0
    # Fewer rounds than this in the period: listed, but not ranked (too few to judge).
    min_received: Annotated[int, Meta(ge=0, le=100_000)] = 1


class RankingEntry(Struct, frozen=True):
    rank: int | None  # None: not ranked (fewer rounds than min_received)
    name: str  # unit id or department code
    score: float | None
    components: dict[str, float | None]  # component -> value in [0, 1] (None: no data)
    received: int


class Ranking(Struct, frozen=True, tag_field="schema", tag="cityos.ranking.v1"):
    level: Literal["unit", "department"]
    start: datetime
    end: datetime
    weights: RankingWeights
    formula: str
    entries: list[RankingEntry]


class RoundFacts(Struct, frozen=True, tag_field="schema", tag="cityos.round_facts.v1"):
    """One round behind a figure: the case, the unit, its times and deadlines."""

    case_id: int
    round_seq: int
    unit: str
    department: str
    dispatched_at: datetime
    category: str | None = None
    accept_due: datetime | None = None
    dispose_due: datetime | None = None
    accepted_at: datetime | None = None
    handled_at: datetime | None = None
    returned: bool = False
    escalations: int = 0
    closed: bool = False
    reopened: bool = False
    score: int | None = None


class RoundPage(Struct, frozen=True, tag_field="schema", tag="cityos.round_page.v1"):
    figure: str
    unit: str | None
    department: str | None
    start: datetime
    end: datetime
    items: list[RoundFacts]


class TimelineEntry(Struct, frozen=True):
    at: datetime
    source: Literal["case", "dispatch"]
    kind: str
    event: dict[str, Any]  # the cityos.case_event.v1 or cityos.dispatch_event.v1


class CaseTimeline(Struct, frozen=True, tag_field="schema", tag="cityos.case_timeline.v1"):
    case_id: int
    rounds: list[RoundFacts]
    timeline: list[TimelineEntry]


class RebuildStatus(Struct, frozen=True, tag_field="schema", tag="cityos.review_rebuild.v1"):
    state: Literal["idle", "running", "done", "failed"]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: int = 0
    events_per_s: float | None = None
    error: str | None = None
