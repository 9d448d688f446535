"""Trajectories (cleaned) and route deviation on hand-made tracks."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stquery.conftest import at, drive, track, write_fixes

GPS = "stq_track_gps"
T0 = datetime(2026, 11, 12, 2, 0, tzinfo=UTC)
WINDOW = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=3)).isoformat()}
ROUTE = {"type": "LineString", "coordinates": [list(at(0, 0)), list(at(10_000, 0))]}


def detour(north_m: float) -> list[tuple[float, float]]:
    """Along the route to 3 km, `north_m` north, 2 km east, back south, on to 8 km."""
    return [*drive((0, 0), (3000, 0), 300), *drive((3000, 0), (3000, north_m), 300),
            *drive((3000, north_m), (5000, north_m), 300),
            *drive((5000, north_m), (5000, 0), 300), *drive((5000, 0), (8000, 0), 300)]


@pytest.fixture(scope="module")
async def tracks(st: Any, store: Any) -> None:
    clean = track("T-1", T0, drive((0, 0), (3000, 0), 300))  # 10 fixes, 30 s apart
    messy = [*clean[:5], clean[4], (clean[6][0], clean[6][1], *at(50_000, 50_000)),
             *clean[7:]]  # a duplicate, and fix 6 teleported 70 km away
    await write_fixes(store, GPS, messy)
    await write_fixes(store, GPS, [clean[5]])  # fix 5 arrives late
    await write_fixes(store, GPS, track("NEAR", T0, detour(300)))
    await write_fixes(store, GPS, track("FAR", T0, detour(2000)))


async def test_a_trajectory_comes_back_sorted_without_duplicates_or_jumps(
        st: Any, tracks: None) -> None:
    r = await st.get(f"/datasets/{GPS}/subjects/T-1/trajectory", params=WINDOW)
    assert r.status_code == 200, r.text
    feature = r.json()
    props = feature["properties"]
    assert feature["geometry"]["type"] == "LineString"
    assert (props["fixes"], props["duplicates"], props["out_of_order"], props["jumps"]) == (
        11, 1, 1, 1)
    assert len(feature["geometry"]["coordinates"]) == len(props["times"]) == 9
    assert props["times"] == sorted(props["times"])
    assert props["length_m"] == pytest.approx(2700, rel=0.01)


async def test_unknown_subjects_and_bad_windows(st: Any, tracks: None) -> None:
    r = await st.get(f"/datasets/{GPS}/subjects/NOBODY/trajectory", params=WINDOW)
    assert r.status_code == 404 and "NOBODY" in r.json()["detail"]
    r = await st.get(f"/datasets/{GPS}/subjects/T-1/trajectory",
                     params={"start": WINDOW["end"], "end": WINDOW["start"]})
    assert r.status_code == 422 and "reversed" in r.json()["detail"]


async def deviations(st: Any, subject: str, **extra: Any) -> list[dict[str, Any]]:
    r = await st.post("/query/deviation", json={"dataset": GPS, "subject": subject,
                                                "route": ROUTE, **WINDOW, **extra})
    assert r.status_code == 200, r.text
    return list(r.json()["features"])


async def test_a_300_m_detour_is_not_a_deviation_and_a_2_km_one_is(st: Any, tracks: None
                                                                  ) -> None:
    assert await deviations(st, "NEAR", max_distance_m=500, min_duration_s=120) == []
    found = await deviations(st, "FAR", max_distance_m=500, min_duration_s=120)
    assert len(found) == 1
    p = found[0]["properties"]
    # It crossed 500 m going north at x = 3 km and coming back at x = 5 km.
    assert [p["left_lon"], p["left_lat"]] == pytest.approx(list(at(3000, 500)), abs=2e-5)
    assert [p["returned_lon"], p["returned_lat"]] == pytest.approx(list(at(5000, 500)), abs=2e-5)
    left = datetime.fromisoformat(p["left_at"])
    # 10 fixes to x = 3 km (300 s), then north in 333 m steps every 30 s: 500 m after 45 s.
    assert left == T0 + timedelta(seconds=300 + 45)
    assert p["duration_s"] == pytest.approx((1500 + 2000 + 1500) / (1000 / 90), abs=1)
    assert p["max_distance_m"] == pytest.approx(2000, abs=5)
    # Waypoints work as well as a LineString; a short window still open at its end.
    by_waypoints = await st.post("/query/deviation", json={
        "dataset": GPS, "subject": "FAR", "waypoints": ROUTE["coordinates"],
        "start": WINDOW["start"], "end": (T0 + timedelta(minutes=10)).isoformat()})
    open_one = by_waypoints.json()["features"]
    assert len(open_one) == 1 and open_one[0]["properties"]["returned_at"] is None


async def test_a_route_must_be_a_line(st: Any, tracks: None) -> None:
    r = await st.post("/query/deviation", json={
        "dataset": GPS, "subject": "FAR", **WINDOW,
        "route": {"type": "Point", "coordinates": [120.9, 32.0]}})
    assert r.status_code == 422 and "LineString" in r.json()["detail"]
