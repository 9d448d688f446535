"""Reachable area on a 4-node road graph with known travel times; a start cut off from the main
network, or far from any road, is refused with the reason."""

from datetime import UTC, datetime
from typing import Any

import msgspec
import nats
import pytest
from shapely.geometry import Point, shape
from stquery.conftest import at, write_entities

from cityos_contracts.records import Entity
from cityos_contracts.stquery import ReachableArea, ReachableQuery
from cityos_contracts.subjects import REACHABLE_QUERY

NET = "stq_roads"
T = datetime(2020, 1, 1, tzinfo=UTC)


def road(road_id: str, a: tuple[float, float], b: tuple[float, float], speed_kmh: float,
         **attrs: Any) -> Entity:
    return Entity(entity_id=road_id, name=road_id, category="local",
                  geometry={"type": "LineString", "coordinates": [list(at(*a)), list(at(*b))]},
                  valid_from=T, attrs={"speed_kmh": speed_kmh, **attrs})


# A (0, 0) -- B (1000, 0): 100 s at 36 km/h; B -- C (1000, 1000): 100 s; B -- D (4000, 0): 300 s.
# An island road E -- F far away, connected to nothing.
ROADS = [road("AB", (0, 0), (1000, 0), 36), road("BC", (1000, 0), (1000, 1000), 36),
         road("BD", (1000, 0), (4000, 0), 36), road("EF", (0, 5000), (1000, 5000), 36)]


@pytest.fixture(scope="module")
async def roads(st: Any, store: Any) -> None:
    await write_entities(store, NET, ROADS)


async def reach(st: Any, x: float, y: float, **extra: Any) -> Any:
    lon, lat = at(x, y)
    return await st.post("/query/reachable", json={"network": NET, "lon": lon, "lat": lat,
                                                   **extra})


async def test_three_minutes_from_a_on_the_4_node_graph(st: Any, roads: None) -> None:
    r = await reach(st, 0, 20, minutes=3)  # 20 m off road AB, at A
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["snap_distance_m"] == pytest.approx(20, abs=0.5)
    kinds = {f["properties"]["kind"]: f for f in body["features"]}
    area = shape(kinds["area"]["geometry"])
    # B is reached after 100 s; the remaining 80 s take the vehicle 800 m up BC and along BD.
    for x, y, inside in [(500, 0, True), (1000, 0, True), (1000, 700, True), (1000, 950, False),
                         (1700, 0, True), (1950, 0, False), (500, 500, False)]:
        assert area.contains(Point(*at(x, y))) is inside, (x, y)
    boundary = [f for f in body["features"] if f["properties"]["kind"] == "boundary"]
    assert len(boundary) == 1
    b = boundary[0]["properties"]
    assert (b["degree"], b["seconds"]) == (3, pytest.approx(100, abs=0.5))
    assert boundary[0]["geometry"]["coordinates"] == pytest.approx(list(at(1000, 0)), abs=1e-6)


async def test_a_start_mid_road_goes_both_ways(st: Any, roads: None) -> None:
    r = await reach(st, 2500, 0, minutes=1)  # the middle of BD: 60 s reach 600 m each way
    area = shape(next(f for f in r.json()["features"]
                      if f["properties"]["kind"] == "area")["geometry"])
    assert area.contains(Point(*at(1950, 0))) and area.contains(Point(*at(3050, 0)))
    assert not area.contains(Point(*at(1800, 0))) and not area.contains(Point(*at(3200, 0)))


async def test_a_disconnected_start_or_one_far_from_roads_is_refused(st: Any, roads: None
                                                                     ) -> None:
    r = await reach(st, 500, 5000)
    assert r.status_code == 422
    assert "not connected to its main part" in r.json()["detail"]
    r = await reach(st, 500, 5000, allow_disconnected=True, minutes=1)
    assert r.status_code == 200
    r = await reach(st, 500, 3000)
    assert r.status_code == 422 and "from the nearest road" in r.json()["detail"]
    r = await st.post("/query/reachable", json={"network": "stq_no_roads", "lon": 120.9,
                                                "lat": 32.0})
    assert r.status_code == 404


async def test_the_topology_follows_the_roads(st: Any, store: Any, roads: None) -> None:
    before = (await st.get(f"/datasets/{NET}/network")).json()
    assert (before["nodes"], before["edges"], before["components"]) == (6, 4, 2)
    await write_entities(store, NET, [road("DE", (4000, 0), (0, 5000), 60)],
                         batch_id="stq-roads-bridge")
    after = (await st.get(f"/datasets/{NET}/network")).json()
    assert (after["nodes"], after["edges"], after["components"]) == (6, 5, 1)


async def test_reachable_over_nats(st: Any, roads: None, nats_prefix: str) -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        lon, lat = at(0, 20)
        reply = await nc.request(f"{nats_prefix}.{REACHABLE_QUERY.pattern}", msgspec.json.encode(
            ReachableQuery(network=NET, lon=lon, lat=lat, minutes=3)), timeout=10)
        area = msgspec.json.decode(reply.data, type=ReachableArea)
        assert area.features[0].properties.kind == "area"
    finally:
        await nc.close()
