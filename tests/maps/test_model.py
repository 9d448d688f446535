"""The maps service's own logic, without services: the case read model, live positions, the
geometry of box select, theme files, figures, the route declarations and the built assets."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cityos_contracts.records import ObservationBatch
from cityos_kit.auth import undeclared_routes
from cityos_kit.city import City
from cityos_kit.config import load_settings
from cityos_maps import board
from cityos_maps.app import build_app
from cityos_maps.cases import CaseBoard, EventPlace, StreamEvent, category_infos
from cityos_maps.config import MapsSettings, ServiceClient
from cityos_maps.geo import BadPolygon, contains, distance_m, grid_counts
from cityos_maps.positions import Positions, StaffPositions, columns
from cityos_maps.themes import (
    SHIPPED,
    CaseFilter,
    ThemeError,
    load_file,
    load_themes,
    staff_datasets,
)
from cityos_maps.upstream import Upstreams

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
WEB = Path(__file__).resolve().parents[2] / "services" / "maps" / "web"
STATIC = Path(__file__).resolve().parents[2] / "services" / "maps" / "cityos_maps" / "static"


def event(case_id: int, seq: int, kind: str, status: str, minutes: float = 0,
          **extra: Any) -> StreamEvent:
    return StreamEvent(case_id=case_id, seq=seq, kind=kind, to_status=status,
                       at=T0 + timedelta(minutes=minutes), **extra)


@pytest.fixture
def cases() -> CaseBoard:
    return CaseBoard(category_infos(City(load_settings("maps").city_dir).categories))


def test_case_board_follows_a_case_and_ignores_redelivered_events(cases: CaseBoard) -> None:
    place = EventPlace(lon=120.8, lat=32.0, district="329901", street="329901001")
    cases.apply(event(1, 1, "received", "received", location=place))
    cases.apply(event(1, 2, "classified", "classified", category="0102"))  # 4 h to dispose
    cases.apply(event(1, 3, "accepted", "accepted", 5))
    assert cases.apply(event(1, 2, "classified", "classified")) is None  # seen already
    cases.apply(event(1, 4, "dispatched", "dispatched", 6, unit="HWC-329901"))
    row = cases.cases[1]
    assert (row.status, row.category, row.unit, row.street) == \
        ("dispatched", "0102", "HWC-329901", "329901001")
    assert cases.dispose_due(row) == T0 + timedelta(hours=4)
    assert cases.overdue(row, T0 + timedelta(hours=5))
    assert cases.on_time(row) is None
    cases.apply(event(1, 5, "handled", "handled", 120))
    assert cases.on_time(row) is True and not cases.overdue(row, T0 + timedelta(hours=5))
    cases.apply(event(1, 6, "closed", "closed", 200))
    assert not row.open
    assert cases.prune(T0) == 0 and 1 in cases.cases
    midnight = T0.replace(hour=0)
    assert list(cases.select(CaseFilter(open=True), T0, midnight)) == []
    assert len(list(cases.select(CaseFilter(today=True, groups=["市容环境"]), T0, midnight))) == 1
    assert cases.prune(T0 + timedelta(days=1)) == 1 and not cases.cases  # finished, long ago


def test_case_board_tolerates_kinds_it_does_not_know(cases: CaseBoard) -> None:
    cases.apply(event(2, 1, "received", "received"))
    assert cases.apply(event(2, 2, "escalated_to_the_moon", "received")) is not None
    assert cases.cases[2].seq == 2


def _batch(subjects: list[str], ts: list[datetime], lon: float = 120.9) -> ObservationBatch:
    n = len(subjects)
    return ObservationBatch(batch_id="b", dataset="vehicle_gps", version=1, owner="JTJ",
                            subject=subjects, ts=ts, lon=[lon] * n, lat=[32.0] * n,
                            speed_kmh=[30.0] * n)


def _staff(subjects: list[str], ts: list[datetime], on_duty: list[bool]) -> ObservationBatch:
    n = len(subjects)
    return ObservationBatch(batch_id="s", dataset="field_staff", version=1, owner="CMD",
                            subject=subjects, ts=ts, lon=[120.9] * n, lat=[32.0] * n,
                            attrs=[{"unit": "CGJ-329901", "on_duty": d} for d in on_duty])


def test_staff_on_duty_are_on_the_map_with_their_unit_and_leave_it_off_duty() -> None:
    staff = StaffPositions(frozenset({"field_staff"}), max_age_s=900)
    staff.apply(_staff(["w1", "w2"], [T0, T0], [True, True]))
    wire = columns(staff.take_changes(), staff.expire())
    assert sorted(wire["id"]) == ["w1", "w2"] and wire["u"] == ["CGJ-329901"] * 2
    # w2 goes off duty (an older on-duty fix of w1 changes nothing).
    staff.apply(_staff(["w2", "w1"], [T0 + timedelta(seconds=5), T0 - timedelta(seconds=5)],
                       [False, True]))
    wire = columns(staff.take_changes(), staff.expire())
    assert wire["id"] == [] and wire["gone"] == ["field_staff/w2"]
    assert [p.subject for p in staff.all()] == ["w1"]
    # Vehicles carry no unit column.
    assert "u" not in columns(Positions(frozenset({"vehicle_gps"}), 900).all())
    themes = load_themes(frozenset(board.METRICS))
    assert staff_datasets(themes) == {"field_staff"}
    assert [layer.kind for layer in themes["emergency"].layers].count("staff") == 1
    assert 1100 < distance_m(120.9, 32.0, 120.9, 32.01) < 1115


def test_positions_keep_the_newest_fix_and_report_changes_once() -> None:
    positions = Positions(frozenset({"vehicle_gps"}), max_age_s=900)
    assert positions.apply(_batch(["A", "B"], [T0, T0])) == 2
    assert positions.apply(_batch(["A"], [T0 - timedelta(seconds=10)], lon=121.0)) == 0
    assert positions.rows[("vehicle_gps", "A")].lon == 120.9
    changed = positions.take_changes()
    assert sorted(p.subject for p in changed) == ["A", "B"]
    assert positions.take_changes() == []
    wire = columns(positions.all(), full=True)
    assert wire["datasets"] == ["vehicle_gps"] and sorted(wire["id"]) == ["A", "B"]
    assert wire["v"] == [30.0, 30.0]


def test_point_in_drawn_polygon_and_grid_counts() -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]],
                                                 [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1],
                                                  [0.5, 0.5]]]}
    inside = contains(square)
    assert inside(1.5, 1.5) and not inside(0.7, 0.7) and not inside(3, 1)
    assert not inside(None, None)
    with pytest.raises(BadPolygon):
        contains({"type": "Point", "coordinates": [0, 0]})
    cells = grid_counts([(120.9, 32.0), (120.9001, 32.0001), (121.0, 32.1)], 500)
    assert [c["count"] for c in cells] == [2, 1]


def test_every_shipped_theme_loads_and_a_typo_is_refused(tmp_path: Path) -> None:
    themes = load_themes(frozenset(board.METRICS))
    assert len(themes) >= 7
    assert next(iter(themes.values())).overall
    assert {"city_management", "traffic", "hazardous_chemicals", "environment", "emergency",
            "social_governance", "efficiency"} <= set(themes)
    bad = tmp_path / "bad.yaml"
    bad.write_text((SHIPPED / "traffic.yaml").read_text().replace("vehicles.count",
                                                                  "vehicles.cuont", 1))
    with pytest.raises(ThemeError, match="unknown metric"):
        load_file(bad, frozenset(board.METRICS))
    own = tmp_path / "city" / "night.yaml"
    own.parent.mkdir()
    own.write_text("id: night\ntitle: {zh: 夜间经济, en: Night economy}\nlayers:\n"
                   "  - {id: divisions, kind: divisions, title: {zh: 区划, en: Divisions}}\n")
    assert "night" in load_themes(frozenset(board.METRICS), own.parent)


async def test_figures_and_charts_from_the_live_state(cases: CaseBoard) -> None:
    cases.apply(event(1, 1, "received", "received"))
    cases.apply(event(1, 2, "classified", "classified", category="0101"))
    cases.apply(event(2, 1, "received", "received"))
    cases.apply(event(2, 2, "classified", "classified", category="0803"))
    vehicles = Positions(frozenset({"vehicle_gps"}), 900)
    vehicles.apply(_batch(["A", "B", "C"], [T0] * 3))
    settings = MapsSettings()
    ctx = board.Context(cases=cases, vehicles=vehicles, sensors=Positions(frozenset(), 900),
                        staff=Positions(frozenset(), 900),
                        upstreams=Upstreams(settings, "http://issuer.test", ServiceClient()),
                        units={}, departments={}, now=T0 + timedelta(minutes=1),
                        midnight=T0.replace(hour=0))
    themes = load_themes(frozenset(board.METRICS))
    result = await board.compute(ctx, themes["overall"])
    figures = {f["id"]: f["value"] for f in result["figures"]}
    assert figures["open_cases"] == 2 and figures["warnings"] == 1
    assert figures["vehicles"] == 3 and figures["on_time_rate"] is None
    charts = {c["id"]: c for c in result["charts"]}
    assert sum(charts["by_group"]["series"][0]["values"]) == 2
    assert {"zh": "市容环境", "en": "City appearance"} in charts["by_group"]["labels"]
    # Without a service client or a person's token, other services' figures are "—".
    assert (await board.compute(ctx, themes["efficiency"]))["figures"][-1]["value"] is None


def test_every_route_declares_its_scope() -> None:
    app = build_app(load_settings("maps"))
    assert undeclared_routes(app) == []


def test_built_assets_match_the_sources() -> None:
    """The service ships the built web application; rebuild (npm run build in
    services/maps/web) after changing the sources, and commit the result."""
    info = json.loads((STATIC / "build-info.json").read_text())
    digest = hashlib.sha256()
    files = sorted(str(p.relative_to(WEB)) for source in info["sources"]
                   for p in ([WEB / source] if (WEB / source).is_file()
                             else sorted((WEB / source).rglob("*"))) if p.is_file())
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update((WEB / name).read_bytes())
        digest.update(b"\0")
    assert digest.hexdigest() == info["sources_sha256"], "stale build: npm run build"
    for page in ("index.html", "console.html", "field.html"):
        html = (STATIC / page).read_text()
        assert "/assets/" in html and "http" not in html.split("<body")[0].replace(
            "http-equiv", "")  # nothing fetched from outside
