"""The hazchem detectors on the planted scenario: P, R and F1 >= 0.95 per warning kind.

Stay points: the application gets them from the spatio-temporal service's stay-point query.
Here a stand-in of that query runs the service's own algorithm in-process on the same cleaned
fixes (with the parameters the application asks the service for), which keeps this test fast
and free of services; the rules themselves never import the algorithm.
"""

from collections.abc import Sequence

import numpy as np
import pytest

from cityos_hazchem import evaluate, rules, scenario
from cityos_hazchem.rules import Stays, Thresholds, Track
from cityos_spatiotemporal.queries import staypoints

STAY_PARAMS = staypoints.Params(distance_m=200.0, duration_s=1200.0, max_gap_s=3 * 3600.0)


def service_stays(tracks: Sequence[Track]) -> Stays:
    offsets = np.concatenate(([0], np.cumsum([len(t.t) for t in tracks]))).astype(np.int64)
    fx = staypoints.Fixes(offsets=offsets, t=np.concatenate([t.t for t in tracks]),
                          lon=np.concatenate([t.lon for t in tracks]),
                          lat=np.concatenate([t.lat for t in tracks]))
    st, _ = staypoints.detect(fx, STAY_PARAMS)
    names = np.array([t.vehicle for t in tracks])
    return Stays(vehicle=names[st.group], arrival=st.arrival, departure=st.departure,
                 lon=st.lon, lat=st.lat)


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_precision_recall_f1_per_kind(seed: int) -> None:
    sc = scenario.generate(seed=seed)
    warnings = evaluate.run(sc, service_stays)
    scores = evaluate.score(sc, warnings)
    print()
    for s in scores.values():
        print(s.line())
    for s in scores.values():
        assert s.tp > 0, s.line()
        assert min(s.precision, s.recall, s.f1) >= 0.95, s.line()


@pytest.mark.parametrize("seed", [7, 11])
def test_lost_fixes_neither_create_nor_hide_warnings(seed: int) -> None:
    """Another 10% of every track's fixes lost at random (on top of the scenario's duplicates,
    late fixes, outliers and silent terminals): the same subjects warn of the same kinds."""
    sc = scenario.generate(seed=seed)
    clean_got = {(evaluate.subject(sc, w), w.kind) for w in evaluate.run(sc, service_stays)}
    rng = np.random.default_rng(seed)
    lossy = []
    for tr in sc.tracks:
        keep = rng.random(len(tr.t)) > 0.10
        lossy.append(Track(tr.vehicle, tr.t[keep], tr.lon[keep], tr.lat[keep]))
    sc.tracks = lossy
    got = {(evaluate.subject(sc, w), w.kind) for w in evaluate.run(sc, service_stays)}
    assert got == clean_got


def test_generator_is_deterministic() -> None:
    a, b = scenario.generate(copies=2), scenario.generate(copies=2)
    assert [t.vehicle for t in a.tracks] == [t.vehicle for t in b.tracks]
    assert all(np.array_equal(x.lon, y.lon) and np.array_equal(x.t, y.t)
               for x, y in zip(a.tracks, b.tracks, strict=True))


def test_repeat_visits_raise_severity_and_thresholds_are_per_city() -> None:
    sc = scenario.generate(copies=1)
    warnings = evaluate.run(sc, service_stays)
    closed = sorted((w for w in warnings if w.kind == rules.CLOSED_STAY and w.vehicle == "CLOSED-0"),
                    key=lambda w: w.start)
    assert [w.severity for w in closed] == [1, 2]
    assert closed[0].evidence["enterprise"] == "E-CLOSED-0"
    # A city with a 01:00-05:00 night window also warns the 01:00 look-alike.
    late = evaluate.run(sc, service_stays, Thresholds(night_start="01:00"))
    assert any(w.kind == rules.NIGHT and w.vehicle == "LATE-0" for w in late)


def test_look_alikes_sit_just_inside_the_thresholds() -> None:
    """Each new kind's look-alikes warn once its threshold is loosened (so the rules do look at
    them), and the planted ones carry what an operator needs."""
    sc = scenario.generate(copies=1)
    base = evaluate.run(sc, service_stays)
    dev = next(w for w in base if w.kind == rules.ROUTE_DEVIATION)
    assert (dev.vehicle, dev.evidence["trip"], dev.evidence["returned"]) == \
        ("ROUTE-0", "T-ROUTE-0", True)
    assert dev.evidence["off_route_s"] >= 300 and dev.evidence["max_distance_m"] > 2900
    loose = evaluate.run(sc, service_stays, Thresholds(route_max_m=250, route_min_s=60,
                                                       site_min_visits=2))
    warned = {(evaluate.subject(sc, w), w.kind) for w in loose}
    assert {("DETOUR-0", rules.ROUTE_DEVIATION), ("EXCURSION-0", rules.ROUTE_DEVIATION)} <= warned
    sites = [w for w in loose if w.kind == rules.BLACK_SITE]
    assert len(sites) == 2  # the 2-visit spot too, never one vehicle three times in a day
    site = next(w for w in base if w.kind == rules.BLACK_SITE)
    assert (site.severity, site.evidence["visits"]) == (2, 5)  # 5 vehicle-days on copy 0
    lic = {w.evidence["enterprise"]: w.evidence["issues"] for w in base if w.kind == rules.LICENCE}
    assert lic == {"E-EXPIRED-0": ["licence_expired"], "E-BADCODE-0": ["credit_code_invalid"],
                   "E-TWIN-0": ["credit_code_shared"]}


def test_credit_code_check_character() -> None:
    assert rules.valid_credit_code(scenario.credit_code(42))
    assert not rules.valid_credit_code(scenario.credit_code(42, valid=False))
    assert rules.valid_credit_code("91350100M000100Y43")  # the standard's example
    assert not rules.valid_credit_code("91350100M000100Y44")  # one typo
    assert not rules.valid_credit_code("91350100I000100Y43")  # I is not in the alphabet
    assert not rules.valid_credit_code("") and not rules.valid_credit_code("9132060")


def test_each_warning_becomes_a_valid_system_report() -> None:
    import msgspec

    from cityos_contracts.cases import ReportIn
    from cityos_hazchem.reports import to_report

    sc = scenario.generate(copies=1)
    warnings = evaluate.run(sc, service_stays)
    assert {w.kind for w in warnings} == set(rules.KINDS)
    reports = [to_report(w) for w in warnings]
    for r in reports:
        again = msgspec.json.decode(msgspec.json.encode(r), type=ReportIn)  # passes validation
        assert again.channel == "system" and again.category == "0803"
    assert len({r.idempotency_key for r in reports}) == len(reports)
