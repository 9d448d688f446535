"""Stay points over HTTP: on demand, matched with enterprises as they were at the time, POIs or
nothing; and kept up to date as fixes arrive through ingestion and NATS."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from data_platform.conftest import eventually
from data_platform.conftest import stored as count
from data_platform.test_ingestion import ndjson, push
from data_platform.test_storage import register
from stquery.conftest import (
    at,
    drive,
    entity,
    stay,
    track,
    write_entities,
    write_fixes,
)

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec

GPS = "stq_stay_gps"
FIRMS = "stq_stay_firms"
POIS = "stq_stay_pois"
BASE = (datetime.now(UTC) - timedelta(hours=8)).replace(microsecond=0)
CLOSED_AT = BASE + timedelta(hours=3)
FACTORY, NOWHERE, STATION = (2000.0, 0.0), (2000.0, 6000.0), (-3000.0, 2000.0)


def visit(place: tuple[float, float], stop_minutes: float) -> list[tuple[float, float]]:
    """Drive in from 2 km west of `place`, stop there, drive on 2 km east."""
    x, y = place
    return [*drive((x - 2000, y), place, 300), *stay(place, int(stop_minutes * 2)),
            *drive((x + 300, y), (x + 2300, y), 300)]


@pytest.fixture(scope="module")
async def fleet(st: Any, store: Any) -> dict[str, Any]:
    await write_entities(store, FIRMS, [
        entity("F-1", *at(*FACTORY), category="chemical", name="示范化工",
               status="operating", licence_valid_until="2030-12-31"),
        entity("F-1", *at(*FACTORY), category="chemical", name="示范化工", status="closed",
               valid_from=CLOSED_AT, licence_valid_until="2030-12-31"),
    ])
    await write_entities(store, POIS, [
        entity("P-1", *at(*STATION), category="gas_station", name="加油站"),
        entity("P-2", *at(*STATION), category="restaurant", name="饭店")])
    # At the factory for 50 minutes, but silent for 30 of them: 10 + 10 minutes of fixes.
    gap = track("GAP", BASE, visit(FACTORY, 20))
    stop_at = next(i for i, r in enumerate(gap) if abs(r[2] - at(*FACTORY)[0]) < 1e-4)
    gap = gap[:stop_at + 20] + [(s, t + timedelta(minutes=30), x, y)
                                 for s, t, x, y in gap[stop_at + 20:]]
    rows = [
        *track("AFTER", BASE + timedelta(hours=4), visit(FACTORY, 25)),  # factory closed
        *track("BEFORE", BASE + timedelta(hours=1), visit(FACTORY, 25)),  # still operating
        *track("SHORT", BASE + timedelta(hours=2), visit(FACTORY, 15)),
        *track("BLACK", BASE + timedelta(hours=2), visit(NOWHERE, 30)),
        *track("FUEL", BASE + timedelta(hours=2), visit(STATION, 25)),
        *gap,
    ]
    await write_fixes(store, GPS, rows, speed=30.0)
    return {"start": BASE.isoformat(), "end": (BASE + timedelta(hours=8)).isoformat()}


async def subject_stays(st: Any, subject: str, window: dict[str, Any]) -> list[dict[str, Any]]:
    r = await st.get(f"/datasets/{GPS}/subjects/{subject}/staypoints", params=window)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    features: list[dict[str, Any]] = r.json()["features"]
    return features


async def test_a_25_minute_stop_is_a_stay_and_15_minutes_or_a_gap_is_not(
        st: Any, fleet: dict[str, Any]) -> None:
    after = await subject_stays(st, "AFTER", fleet)
    assert len(after) == 1
    props = after[0]["properties"]
    assert props["duration_s"] == 25 * 60 and props["fixes"] == 50
    assert after[0]["geometry"]["coordinates"] == pytest.approx(list(at(*FACTORY)), abs=1e-4)
    assert await subject_stays(st, "SHORT", fleet) == []
    assert await subject_stays(st, "GAP", fleet) == []
    shorter = await st.get(f"/datasets/{GPS}/subjects/SHORT/staypoints",
                           params={**fleet, "duration_s": 600})
    assert len(shorter.json()["features"]) == 1


async def test_stays_are_matched_with_the_enterprise_as_it_was_then_a_poi_or_nothing(
        st: Any, fleet: dict[str, Any]) -> None:
    query = {"dataset": GPS, **fleet, "source": "compute", "enterprise_datasets": [FIRMS],
             "poi_datasets": [POIS], "poi_kinds": ["gas_station", "rest_area"]}
    r = await st.post("/query/staypoints/match", json=query)
    assert r.status_code == 200, r.text
    by_subject = {f["properties"]["subject"]: f["properties"] for f in r.json()["features"]}
    assert set(by_subject) == {"AFTER", "BEFORE", "BLACK", "FUEL"}
    after, before = by_subject["AFTER"], by_subject["BEFORE"]
    assert after["match"] == "enterprise" and after["flags"] == ["closed_enterprise"]
    assert after["enterprises"][0] | {"distance_m": 0} == {
        "dataset": FIRMS, "entity_id": "F-1", "distance_m": 0, "name": "示范化工",
        "status": "closed", "licence_valid": True}
    assert before["enterprises"][0]["status"] == "operating" and before["flags"] == []
    assert by_subject["BLACK"]["match"] == "nothing"
    assert by_subject["BLACK"]["flags"] == ["no_enterprise_no_poi"]
    fuel = by_subject["FUEL"]
    assert fuel["match"] == "poi" and [p["kind"] for p in fuel["pois"]] == ["gas_station"]


async def test_a_fleet_query_and_bad_input(st: Any, fleet: dict[str, Any]) -> None:
    r = await st.post("/query/staypoints", json={"dataset": GPS, **fleet})
    assert r.status_code == 200, r.text
    assert {f["properties"]["subject"] for f in r.json()["features"]} == {
        "AFTER", "BEFORE", "BLACK", "FUEL"}
    too_long = {"start": fleet["start"],
                "end": (BASE + timedelta(days=3)).isoformat()}
    r = await st.post("/query/staypoints", json={"dataset": GPS, **too_long})
    assert r.status_code == 422 and "longer than the limit" in r.json()["detail"]
    r = await st.get(f"/datasets/{GPS}/subjects/NOBODY/staypoints", params=fleet)
    assert r.status_code == 404 and "NOBODY" in r.json()["detail"]
    r = await st.post("/query/staypoints", json={"dataset": GPS, **fleet, "store": True})
    assert r.status_code == 403  # storing needs stquery:write


LIVE = DatasetRegistration(
    name="stq_live_gps", title="Live GPS for stay points", owner="JTJ", kind="observation",
    fields=[FieldSpec("plate", "string", required=True), FieldSpec("ts", "datetime", True),
            FieldSpec("lon", "number", True), FieldSpec("lat", "number", True)],
    mapping=FieldMapping(subject="plate", time="ts", lon="lon", lat="lat"))


def records(rows: list[tuple[str, datetime, float, float]]) -> bytes:
    return ndjson([{"plate": s, "ts": t.isoformat(), "lon": round(x, 7), "lat": round(y, 7)}
                   for s, t, x, y in rows])


async def test_stay_points_are_kept_up_to_date_as_fixes_arrive(
        ingestion: Any, st: Any) -> None:
    await register(ingestion, LIVE)
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    rows = track("LIVE-1", start, [*visit(FACTORY, 30), *stay((FACTORY[0] + 2300, 0), 50)])
    # The stop spans two batches; a third re-sends a fix of the stop late, out of order.
    halves = (rows[:20], rows[20:])
    for part in halves:
        result = (await push(ingestion, records(part), "application/x-ndjson",
                             dataset=LIVE.name)).json()
        assert result["accepted"] == len(part), result
    window = {"start": start.isoformat(), "end": (start + timedelta(hours=3)).isoformat()}

    async def stored(include_open: bool) -> list[dict[str, Any]]:
        r = await st.get(f"/datasets/{LIVE.name}/staypoints",
                         params={**window, "include_open": include_open})
        assert r.status_code == 200, r.text
        return list(r.json()["features"])

    async def all_stored() -> bool:
        return await count(st, LIVE.name) == len(rows)

    await eventually(all_stored)
    expected = (await st.get(f"/datasets/{LIVE.name}/subjects/LIVE-1/staypoints",
                             params={**window, "include_last": True})).json()["features"]
    assert [f["properties"]["open"] for f in expected] == [False, True]

    async def caught_up() -> bool:
        return len(await stored(True)) == 2

    await eventually(caught_up, timeout=30)
    kept = await stored(True)
    for got, want in zip(kept, expected, strict=True):
        assert got["properties"] | {"dataset": ""} == want["properties"] | {"dataset": ""}
        assert got["geometry"]["coordinates"] == pytest.approx(want["geometry"]["coordinates"])
    assert [f["properties"]["open"] for f in await stored(False)] == [False]
    # The vehicle leaves: its open stay closes in place (same arrival).
    leave = track("LIVE-1", rows[-1][1] + timedelta(seconds=30),
                  drive((FACTORY[0] + 2300, 0), (FACTORY[0] + 5000, 0), 300))
    late = [rows[25]]  # a fix of the first stop, sent again after the fact
    body = records(leave) + records([(s, t + timedelta(seconds=1), x, y) for s, t, x, y in late])
    assert (await push(ingestion, body, "application/x-ndjson",
                       dataset=LIVE.name)).json()["rejected"] == 0

    async def closed() -> bool:
        return [f["properties"]["open"] for f in await stored(True)] == [False, False]

    await eventually(closed, timeout=30)
    again = (await st.get(f"/datasets/{LIVE.name}/subjects/LIVE-1/staypoints",
                          params=window)).json()["features"]
    assert [f["properties"]["arrival"] for f in await stored(False)] == [
        f["properties"]["arrival"] for f in again]
    assert msgspec.json.encode(kept[1]["properties"]["arrival"]) == msgspec.json.encode(
        again[1]["properties"]["arrival"])
