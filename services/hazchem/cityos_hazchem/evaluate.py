"""Precision, recall and F1 per warning kind: the detectors against a scenario's ground truth.

Stay points come from a `StaySource` (in production the spatio-temporal service's stay-point
query, turned into arrays by `rules.stays_from_features`); this module never computes them.
A warning counts at the (subject, kind) level: a subject planted with a kind must get at least
one warning of that kind (recall), and every subject warned of a kind must have it planted
(precision). The subject is the vehicle, the enterprise (licence anomaly) or, for a suspected
black-workshop site, the planted site within `SITE_MATCH_M` of the warning (else the warning's
own site id, a false positive).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cityos_hazchem import rules
from cityos_hazchem.rules import Stays, Thresholds, Track, Warning
from cityos_hazchem.scenario import Scenario

SITE_MATCH_M = 300.0
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
                                          sc.pois, th, trips=sc.trips)
    return out


def subject(sc: Scenario, w: Warning) -> str:
    if w.kind == rules.BLACK_SITE:
        for name, (lon, lat) in sc.sites.items():
            if rules.route_distance(np.array([w.lon]), np.array([w.lat]), np.array([lon]),
                                    np.array([lat]))[0] <= SITE_MATCH_M:
                return name
    return rules.subject(w)


def score(sc: Scenario, warnings: Sequence[Warning]) -> dict[str, Score]:
    got = {(subject(sc, w), w.kind) for w in warnings}
    want = {(v, k) for v, kinds in sc.truth.items() for k in kinds}
    return {k: Score(k, sum(1 for g in got if g[1] == k and g in want),
                     sum(1 for g in got if g[1] == k and g not in want),
                     sum(1 for w in want if w[1] == k and w not in got))
            for k in rules.KINDS}
