"""The ranking: one transparent score per unit or department.

Each component is a rate in [0, 1] computed from the period's figures; the score is
100 × Σ weight × component / Σ weight, over the components that have a value (a unit without
ratings is not scored on satisfaction rather than scored zero). Every entry lists its
components, so anyone can recompute its score from the answer.
"""

from datetime import datetime

from cityos_contracts.review import (
    Contribution,
    Ranking,
    RankingEntry,
    RankingWeights,
    UnitFigures,
)

FORMULA = ("score = 100 × Σ(weight × component) / Σ(weight of components with a value); "
           "components: accept_on_time = accepted_on_time / received; dispose_on_time = "
           "disposed_on_time / received; no_return = 1 − returns / received; no_escalation = "
           "1 − min(1, escalations / received); no_reopen = 1 − reopened / closed; "
           "satisfaction = (average rating − 1) / 4; data_contribution = validity × "
           "completeness of the department's data")
COMPONENTS = ("accept_on_time", "dispose_on_time", "no_return", "no_escalation", "no_reopen",
              "satisfaction", "data_contribution")


def components(f: UnitFigures, data: Contribution | None) -> dict[str, float | None]:
    n = f.received
    data_rate = None
    if data is not None and data.validity_rate is not None and data.completeness is not None:
        data_rate = data.validity_rate * data.completeness
    return {
        "accept_on_time": f.accept_on_time_rate,
        "dispose_on_time": f.dispose_on_time_rate,
        "no_return": 1 - f.returns / n if n else None,
        "no_escalation": 1 - min(1.0, f.escalations / n) if n else None,
        "no_reopen": 1 - f.reopened / f.closed if f.closed else None,
        "satisfaction": (f.satisfaction_avg - 1) / 4 if f.satisfaction_avg is not None else None,
        "data_contribution": data_rate,
    }


def score(parts: dict[str, float | None], weights: RankingWeights) -> float | None:
    weighted = [(getattr(weights, name), value) for name, value in parts.items()
                if value is not None and getattr(weights, name) > 0]
    total = sum(w for w, _ in weighted)
    return round(100 * sum(w * v for w, v in weighted) / total, 2) if total else None


def rank(level: str, figures: list[UnitFigures], data: dict[str, Contribution],
         weights: RankingWeights, start: datetime, end: datetime) -> Ranking:
    entries = []
    for f in figures:
        parts = components(f, data.get(f.department))
        entries.append((f.unit or f.department, score(parts, weights), parts, f.received))
    ranked = sorted((e for e in entries if e[3] >= weights.min_received and e[1] is not None),
                    key=lambda e: (-(e[1] or 0), e[0]))
    unranked = sorted((e for e in entries if e not in ranked), key=lambda e: e[0])
    result = [RankingEntry(rank=i + 1, name=name, score=s, components=parts, received=n)
              for i, (name, s, parts, n) in enumerate(ranked)]
    result += [RankingEntry(rank=None, name=name, score=s, components=parts, received=n)
               for name, s, parts, n in unranked]
    return Ranking(level=level, start=start, end=end, weights=weights,  # type: ignore[arg-type]
                   formula=FORMULA, entries=result)
