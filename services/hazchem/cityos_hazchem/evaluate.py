"""Precision, recall and F1 per warning kind: the detectors against a scenario's ground truth.

Stay points come from a `StaySource` (in production the spatio-temporal service's stay-point
query, turned into arrays by `rules.stays_from_features`); this module never computes them.
A warning counts at the (vehicle, kind) level: a vehicle planted with a kind must get at least
one warning of that kind (recall), and every vehicle warned of a kind must have it planted
(precision).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cityos_hazchem import rules
from cityos_hazchem.rules import Stays, Thresholds, Track, Warning
from cityos_hazchem.scenario import Scenario

StaySource = Callable[[Sequence[Track]], Stays]


@dataclass(frozen=True)
class Score:
    kind: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def line(self) -> str:
        return (f"{self.kind:<26} P={self.precision:.3f} R={self.recall:.3f} F1={self.f1:.3f} "
                f"(tp={self.tp} fp={self.fp} fn={self.fn})")


def run(sc: Scenario, stays: StaySource, th: Thresholds | None = None) -> list[Warning]:
    th = th or Thresholds()
    cleaned = [rules.clean(tr, th) for tr in sc.tracks]
    out: list[Warning] = rules.detect_all(cleaned, sc.licensed, stays(cleaned), sc.enterprises,
                                          sc.pois, th)
    return out


def score(sc: Scenario, warnings: Sequence[Warning]) -> dict[str, Score]:
    got = {(w.vehicle, w.kind) for w in warnings}
    want = {(v, k) for v, kinds in sc.truth.items() for k in kinds}
    return {k: Score(k, sum(1 for g in got if g[1] == k and g in want),
                     sum(1 for g in got if g[1] == k and g not in want),
                     sum(1 for w in want if w[1] == k and w not in got))
            for k in rules.KINDS}
