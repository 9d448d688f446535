"""The ranking's score: a weighted mean of the components that have a value, each listed."""

from datetime import UTC, datetime

from cityos_contracts.review import Contribution, RankingWeights, UnitFigures
from cityos_review.ranking import components, rank, score

T = datetime(2026, 11, 1, tzinfo=UTC)


def figures(unit: str, received: int, on_time: int, disposed_on_time: int, returns: int = 0,
            escalations: int = 0, closed: int = 0, reopened: int = 0,
            satisfaction: float | None = None) -> UnitFigures:
    return UnitFigures(
        department=unit.split("-")[0], start=T, end=T, unit=unit, received=received,
        accepted=received, accepted_on_time=on_time, disposed=received,
        disposed_on_time=disposed_on_time, returns=returns, escalations=escalations,
        closed=closed, reopened=reopened, reopen_rate=reopened / closed if closed else None,
        accept_on_time_rate=on_time / received, dispose_on_time_rate=disposed_on_time / received,
        satisfaction_avg=satisfaction, ratings=1 if satisfaction else 0)


def test_components_and_score() -> None:
    f = figures("CGJ-329901", 10, 8, 5, returns=1, escalations=20, closed=4, reopened=1,
                satisfaction=4.0)
    data = Contribution(department="CGJ", start=T, end=T, datasets=1, received=100,
                        accepted=90, validity_rate=0.9, completeness=0.5,
                        freshness_mean_s=10.0, freshness_max_s=60.0)
    parts = components(f, data)
    assert parts == {"accept_on_time": 0.8, "dispose_on_time": 0.5, "no_return": 0.9,
                     "no_escalation": 0.0, "no_reopen": 0.75, "satisfaction": 0.75,
                     "data_contribution": 0.45}
    weights = RankingWeights()
    expected = 100 * (20 * 0.8 + 30 * 0.5 + 10 * 0.9 + 10 * 0 + 10 * 0.75 + 15 * 0.75
                      + 5 * 0.45) / 100
    assert score(parts, weights) == round(expected, 2)
    # No ratings, no data: scored on what there is, not zeroed.
    bare = components(figures("HWC-329901", 4, 4, 4), None)
    assert bare["satisfaction"] is None and bare["data_contribution"] is None
    assert score(bare, weights) == 100.0


def test_rank_orders_and_leaves_out_the_thin() -> None:
    result = rank("unit", [figures("A-1", 10, 5, 5), figures("B-1", 10, 9, 9),
                           figures("C-1", 1, 1, 1)], {},
                  RankingWeights(min_received=2), T, T)
    assert [(e.name, e.rank) for e in result.entries] == [("B-1", 1), ("A-1", 2),
                                                          ("C-1", None)]
    assert "Σ" in result.formula
