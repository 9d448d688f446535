"""Stay-point detection on hand-made tracks (no database), and its equality with trackintel."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from stquery.conftest import at, drive, stay

from cityos_spatiotemporal.queries.staypoints import Fixes, Params, detect

P = Params(distance_m=200, duration_s=20 * 60, max_gap_s=15 * 60)


def fixes(points: list[tuple[float, float]], every_s: float = 30.0,
          times: list[float] | None = None) -> Fixes:
    lon, lat = np.array([at(x, y) for x, y in points]).T
    t = np.array(times) if times is not None else np.arange(len(points)) * every_s
    return Fixes(np.array([0, len(points)]), t.astype(float), lon, lat)


def trip_with_stop(stop_minutes: float) -> list[tuple[float, float]]:
    # Drive 2 km east at ~36 km/h (300 m per 30 s fix), stop, drive 2 km further east.
    return [*drive((0, 0), (2000, 0), 300), *stay((2000, 0), int(stop_minutes * 2)),
            *drive((2300, 0), (4300, 0), 300)]


def test_a_25_minute_stop_is_a_stay() -> None:
    found, _ = detect(fixes(trip_with_stop(25)), P)
    assert len(found) == 1
    assert found.fixes[0] == 50
    assert found.departure[0] - found.arrival[0] == 25 * 60  # to the first fix outside
    lon, lat = at(2000, 0)
    assert abs(found.lon[0] - lon) * 94_400 < 5 and abs(found.lat[0] - lat) * 110_574 < 5


def test_a_15_minute_stop_is_not() -> None:
    found, _ = detect(fixes(trip_with_stop(15)), P)
    assert len(found) == 0


def test_a_gap_in_the_fixes_is_not_a_stay() -> None:
    # Ten minutes of fixes, 30 minutes of silence at the same place, ten more minutes.
    points = [*drive((0, 0), (2000, 0), 300), *stay((2000, 0), 40),
              *drive((2300, 0), (4300, 0), 300)]
    t = np.arange(len(points)) * 30.0
    stop = len(drive((0, 0), (2000, 0), 300))
    t[stop + 20:] += 30 * 60
    found, _ = detect(fixes(points, times=t.tolist()), P)
    assert len(found) == 0


def test_the_stay_the_vehicle_is_still_in_is_reported_only_with_include_last() -> None:
    points = [*drive((0, 0), (2000, 0), 300), *stay((2000, 0), 60)]
    assert len(detect(fixes(points), P)[0]) == 0
    last = Params(200, 1200, 900, include_last=True)
    found, _ = detect(fixes(points), last)
    assert len(found) == 1 and found.open[0] and found.fixes[0] == 60


def test_continuing_from_a_carried_run_equals_one_computation() -> None:
    rng = np.random.default_rng(3)
    points = trip_with_stop(25) + trip_with_stop(40)[::-1] + stay((0, 0), 50)
    points = [(x + rng.normal(0, 8), y + rng.normal(0, 8)) for x, y in points]
    whole = fixes(points)
    p = Params(200, 1200, 900, include_last=True)
    expected, _ = detect(whole, p)
    for cut in (10, 35, 70, 100, len(points) - 5):
        head = Fixes(np.array([0, cut]), whole.t[:cut], whole.lon[:cut], whole.lat[:cut])
        first, runs = detect(head, p)
        s = int(runs.start_row[0])
        tail = slice(cut, len(points))
        n = len(points) - cut
        carried = Fixes(
            np.array([0, n + 1]),
            np.concatenate(([runs.start_t[0]], whole.t[tail])),
            np.concatenate(([whole.lon[s]], whole.lon[tail])),
            np.concatenate(([whole.lat[s]], whole.lat[tail])),
            weight=np.concatenate(([runs.fixes[0]], np.ones(n))),
            sum_lon=np.concatenate(([runs.sum_lon[0]], whole.lon[tail])),
            sum_lat=np.concatenate(([runs.sum_lat[0]], whole.lat[tail])),
            prev_t=np.array([runs.last_t[0]]))
        rest, _ = detect(carried, p)
        closed = ~first.open
        arrivals = np.concatenate((first.arrival[closed], rest.arrival))
        assert arrivals.tolist() == expected.arrival.tolist(), cut
        lons = np.concatenate((first.lon[closed], rest.lon))
        assert np.allclose(lons, expected.lon, atol=1e-9), cut


def test_many_subjects_at_once_equal_one_at_a_time() -> None:
    tracks = [trip_with_stop(25), trip_with_stop(10), trip_with_stop(60)]
    alone = [detect(fixes(tr), P)[0] for tr in tracks]
    lon, lat = np.array([at(x, y) for tr in tracks for x, y in tr]).T
    t = np.concatenate([np.arange(len(tr)) * 30.0 for tr in tracks])
    offsets = np.concatenate(([0], np.cumsum([len(tr) for tr in tracks])))
    together, _ = detect(Fixes(offsets, t, lon, lat), P)
    assert together.group.tolist() == [g for g, a in enumerate(alone) for _ in range(len(a))]
    assert together.arrival.tolist() == [x for a in alone for x in a.arrival.tolist()]


def test_same_stay_points_as_trackintel() -> None:
    """trackintel is installed only for comparisons: `uv run --group compare pytest ...`."""
    ti = pytest.importorskip("trackintel")
    gpd = pytest.importorskip("geopandas")
    pd = pytest.importorskip("pandas")
    from cityos_simulator.generator import generate_fixes

    fx = generate_fixes(60, datetime(2026, 11, 1, tzinfo=UTC), timedelta(hours=12),
                        interval_s=30, seed=5)
    order = np.lexsort((fx.ts, fx.plate))
    plate, ts, lon, lat = fx.plate[order], fx.ts[order], fx.lon[order], fx.lat[order]
    subjects, first = np.unique(plate, return_index=True)
    found, _ = detect(Fixes(np.append(first, len(plate)), ts, lon, lat),
                      Params(100, 300, 900, include_last=True))
    pfs = ti.Positionfixes(gpd.GeoDataFrame(
        {"user_id": plate, "tracked_at": pd.to_datetime(ts, unit="s", utc=True)},
        geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326"))
    _, sp = pfs.generate_staypoints(method="sliding", dist_threshold=100, time_threshold=5,
                                    gap_threshold=15, include_last=True)
    ours = sorted(zip(subjects[found.group].tolist(), np.round(found.arrival, 3).tolist(),
                      np.round(found.departure, 3).tolist(), strict=True))
    theirs = sorted(zip(sp.user_id.tolist(),
                        np.round(sp.started_at.astype("int64") / 1e9, 3).tolist(),
                        np.round(sp.finished_at.astype("int64") / 1e9, 3).tolist(), strict=True))
    assert len(ours) > 20
    assert ours == theirs
