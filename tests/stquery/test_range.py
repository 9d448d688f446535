"""Range queries: box or polygon and window, filters, keyset paging; counts per cell and bucket;
bad areas and windows refused with the reason."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stquery.conftest import at, write_fixes

GPS = "stq_range_gps"
T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)
# A 10 x 10 grid of subjects 100 m apart, each reporting every minute for two hours:
# 12,000 fixes; speed = the subject's column * 10 km/h.
GRID = [(f"R-{i}-{j}", i, j) for i in range(10) for j in range(10)]


@pytest.fixture(scope="module")
async def fixes(st: Any, store: Any) -> None:
    rows, speeds = [], []
    for minute in range(120):
        for name, i, j in GRID:
            rows.append((name, T0 + timedelta(minutes=minute), *at(i * 100.0, j * 100.0)))
            speeds.append(i * 10.0)
    for lo in range(0, len(rows), 2000):
        part = rows[lo:lo + 2000]
        # One speed per batch call: write the rows of one column speed at a time.
        for speed in sorted(set(speeds[lo:lo + 2000])):
            await write_fixes(store, GPS, [r for r, s in zip(part, speeds[lo:lo + 2000],
                                                             strict=True) if s == speed], speed)


def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    (w, s), (e, n) = at(x0, y0), at(x1, y1)
    return [w, s, e, n]


def window(minutes_from: int, minutes_to: int) -> dict[str, str]:
    return {"start": (T0 + timedelta(minutes=minutes_from)).isoformat(),
            "end": (T0 + timedelta(minutes=minutes_to)).isoformat()}


async def test_a_box_and_window_page_by_page(st: Any, fixes: None) -> None:
    # Columns 2..4, rows 0..9 (30 subjects) for 30 minutes: 900 fixes, pages of 400.
    query = {"dataset": GPS, "bbox": box(150, -50, 450, 950), **window(10, 40), "limit": 400}
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        r = await st.post("/query/range", json=query | ({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [(f["properties"]["ts"], f["properties"]["subject"]) for f in page["features"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 900 and len(set(seen)) == 900 and seen == sorted(seen)
    assert {s.split("-")[1] for _, s in seen} == {"2", "3", "4"}


async def test_a_polygon_and_attribute_filters(st: Any, fixes: None) -> None:
    # A triangle over the grid's lower-left half, columns with speed >= 30 km/h.
    ring = [at(-50, -50), at(1000, -50), at(-50, 1000), at(-50, -50)]  # x + y < 950
    r = await st.post("/query/range", json={
        "dataset": GPS, "polygon": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        **window(0, 1), "filters": {"speed_kmh_min": 30}, "limit": 10000})
    assert r.status_code == 200, r.text
    subjects = {f["properties"]["subject"] for f in r.json()["features"]}
    expected = {n for n, i, j in GRID if i + j <= 9 and i >= 3}
    assert subjects == expected


async def test_counts_per_square_cell_and_hexagon(st: Any, fixes: None) -> None:
    query = {"dataset": GPS, "bbox": box(-50, -50, 950, 950), **window(0, 120),
             "bucket_s": 3600}
    r = await st.post("/query/cells", json=query | {"grid": "square", "cell_m": 500})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 12000
    assert {f["properties"]["bucket"] for f in body["features"]} == {
        T0.isoformat().replace("+00:00", "Z"), (T0 + timedelta(hours=1)).isoformat().replace(
            "+00:00", "Z")}
    assert all(f["properties"]["count"] % 60 == 0 for f in body["features"])
    r = await st.post("/query/cells", json=query | {"grid": "h3", "h3_resolution": 8})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 12000
    assert r.json()["features"][0]["geometry"]["type"] == "Polygon"


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"bbox": None, "polygon": {"type": "Polygon", "coordinates": [[
        [120.90, 32.00], [120.91, 32.01], [120.91, 32.00], [120.90, 32.01], [120.90, 32.00]]]}},
     422, "Self-intersection"),
    ({"bbox": [179.9, 10, -179.9, 11]}, 422, "antimeridian"),
    ({"bbox": None, "polygon": {"type": "Polygon", "coordinates": [[
        [179.5, 10], [180.5, 10], [180.5, 11], [179.5, 11], [179.5, 10]]]}}, 422, "antimeridian"),
    ({"start": T0.isoformat(), "end": (T0 - timedelta(hours=1)).isoformat()}, 422, "reversed"),
    ({"end": (T0 + timedelta(days=8)).isoformat()}, 422, "longer than the limit"),
    ({"start": "2026-11-10T08:00:00"}, 422, "time zone"),
    ({"bbox": [100, 20, 125, 40]}, 422, "km²"),
    ({"limit": 20000}, 400, "limit"),
    ({"dataset": "stq_no_such"}, 404, "stq_no_such"),
])
async def test_bad_queries_are_refused_with_the_reason(
        st: Any, fixes: None, change: dict[str, Any], status: int, reason: str) -> None:
    query = {"dataset": GPS, "bbox": box(0, 0, 500, 500), **window(0, 60)} | change
    query = {k: v for k, v in query.items() if v is not None}
    r = await st.post("/query/range", json=query)
    assert r.status_code == status, r.text
    assert reason in r.text
