"""The simulator's field staff: a unit's gateway puts its people on duty in dispatch and reports
their positions, which become observations the spatio-temporal nearest query finds, exactly as
hazchem asks for the nearest on-duty traffic police."""

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
from data_platform.conftest import (  # noqa: F401  (the data platform, for the nearest query)
    ingestion,
    issuer,
    spatiotemporal,
)
from dispatch.conftest import dispatch, eventually, staff_dataset, token  # noqa: F401
from events.conftest import events, events_issuer  # noqa: F401
from identity.conftest import ISSUER, admin_token, bootstrap_file, client, identity_app  # noqa: F401
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer
from cityos_kit.city import City
from cityos_kit.config import DEFAULT_CITY_DIR
from cityos_simulator.gateways import demo_units, provision
from cityos_simulator.main import _field_staff, parse_args
from cityos_simulator.roads import RoadNetwork, in_polygons, load_network
from cityos_simulator.staff import FieldStaff, Squad, patrol_network, read_gateways

CITY = City(DEFAULT_CITY_DIR)


@pytest.fixture(scope="module")
def net() -> RoadNetwork:
    return load_network()


def test_a_district_brigade_patrols_only_its_district(net: RoadNetwork) -> None:
    roads = patrol_network(CITY, net, "JJZD-329902")
    district = [f["geometry"] for f in CITY.divisions["features"]
                if f["properties"]["code"] == "329902"]
    assert 100 < roads.n_nodes < net.n_nodes
    assert in_polygons(district, roads.node_lon, roads.node_lat).all()
    assert roads.degree.min() >= 1 and roads.link_speed_kmh.max() <= 40
    squad = Squad.of(CITY, net, "JJZD-329902", 4, 1_000.0, seed=0)
    where = [squad.positions(1_000.0 + 10 * k) for k in range(30)]
    lon = np.array([p.lon for batch in where for p in batch])
    lat = np.array([p.lat for batch in where for p in batch])
    # GPS noise may put a point a few metres over the line, never a block away.
    assert in_polygons(district, lon, lat).mean() > 0.97
    moved = [abs(a.lat - b.lat) + abs(a.lon - b.lon) for a, b in zip(where[0], where[-1],
                                                                     strict=True)]
    assert max(moved) > 1e-3, "people patrol, they do not stand still all the time"


def test_people_and_names_are_the_same_for_the_same_seed(net: RoadNetwork) -> None:
    a = Squad.of(CITY, net, "JJZD", 5, 0.0, seed=1)
    b = Squad.of(CITY, net, "JJZD", 5, 0.0, seed=1)
    assert a.staff_ids == b.staff_ids == [f"JJZD-{i:03d}" for i in range(1, 6)]
    assert a.names == b.names and len(set(a.names)) == 5
    assert all(2 <= len(n) <= 3 and "\u4e00" <= n[0] <= "\u9fff" for n in a.names)
    assert Squad.of(CITY, net, "JJZD", 5, 0.0, seed=2).names != a.names


def test_without_gateway_credentials_there_is_no_feed(tmp_path: Path, net: RoadNetwork) -> None:
    assert _field_staff(parse_args([]), DEFAULT_CITY_DIR, net) is None
    missing = parse_args(["--gateways", str(tmp_path / "none.txt")])
    assert _field_staff(missing, DEFAULT_CITY_DIR, net) is None
    file = tmp_path / "gateways.txt"
    file.write_text("service x client_id=a client_secret=b\n"
                    "gateway JJZD client_id=old client_secret=s0\n"
                    "gateway JJZD client_id=c1 client_secret=s1\n"
                    "gateway CGJ-329901 client_id=c2 client_secret=s2\n")
    assert read_gateways(file) == {"JJZD": ("c1", "s1"), "CGJ-329901": ("c2", "s2")}
    feed = _field_staff(parse_args(["--gateways", str(file), "--staff-per-unit", "2"]),
                        DEFAULT_CITY_DIR, net)
    assert feed is not None and sorted(feed.squads) == ["CGJ-329901", "JJZD"]
    asyncio.run(feed.close())


class Into(httpx.AsyncBaseTransport):
    """Requests into a test client's app; closing our client leaves the app running."""

    def __init__(self, app: AsyncTestClient[Any]) -> None:
        self.inner: Any = app._transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await self.inner.handle_async_request(request)
        return response


def gateway(dispatch: AsyncTestClient[Any], issuer: LocalIssuer,  # noqa: F811
            unit: str) -> httpx.AsyncClient:
    """What a unit's gateway holds: a client token of its unit with scope staff:report."""
    return httpx.AsyncClient(transport=Into(dispatch), base_url=dispatch.base_url,
                             headers=token(issuer, unit=unit, scopes=("staff:report",),
                                           sub=f"gateway-{unit}"))


async def accepted(feed: FieldStaff, n: int) -> bool:
    return feed.tally()["positions_accepted"] >= n


async def test_traffic_police_go_on_duty_and_hazchem_finds_the_nearest(
        net: RoadNetwork, dispatch: AsyncTestClient[Any],  # noqa: F811
        spatiotemporal: AsyncTestClient[Any], staff_dataset: None,  # noqa: F811
        events_issuer: LocalIssuer) -> None:  # noqa: F811
    units = ("JJZD", "JJZD-329901")
    now = time.time()
    feed = FieldStaff({u: Squad.of(CITY, net, u, 3, now, seed=5) for u in units},
                      {u: gateway(dispatch, events_issuer, u) for u in units}, interval_s=0.5)
    stop = asyncio.Event()
    patrol = asyncio.create_task(feed.run(stop))
    try:
        await eventually(lambda: accepted(feed, 6))
        staff = (await dispatch.get("/staff", params={"on_duty": "true", "unit": "JJZD"})).json()
        police = feed.squads["JJZD"]
        assert {(s["staff_id"], s["name"]) for s in staff} == set(
            zip(police.staff_ids, police.names, strict=True))
        assert feed.tally()["on_duty"] == 6
        # Batch after batch, every half second here (10 s in the city), all accepted.
        await eventually(lambda: accepted(feed, 18))
        assert feed.tally()["positions_sent"] - feed.tally()["positions_accepted"] <= 6
        last = {p.staff_id: p for p in police.positions(time.time())}
        target = last["JJZD-002"]

        async def nearest() -> list[dict[str, Any]] | None:
            # hazchem's query (intercept.py): the nearest on-duty people of unit JJZD.
            response = await spatiotemporal.post("/query/nearest", json={
                "schema": "cityos.stquery.nearest_query.v1", "dataset": "field_staff",
                "lon": target.lon, "lat": target.lat, "k": 3, "kind": "mobile",
                "attrs": {"unit": "JJZD", "on_duty": True}})
            assert response.status_code == 200, response.text
            found: list[dict[str, Any]] = response.json()["features"]
            return found if len(found) == 3 else None

        found = await eventually(nearest, timeout=30)
        assert {f["properties"]["id"] for f in found} == set(police.staff_ids)
        first = found[0]["properties"]
        # The brigade's people are of another unit: never among the detachment's.
        assert first["id"] == "JJZD-002" and first["distance_m"] < 300
    finally:
        stop.set()
        await patrol
        await feed.off_duty()
        await feed.close()
    assert (await dispatch.get("/staff", params={"on_duty": "true", "unit": "JJZD"})).json() == []
    assert feed.tally()["on_duty"] == 0


async def test_gateways_are_registered_once_and_sign_in_as_their_unit(
        tmp_path: Path, client: AsyncTestClient[Any], admin_token: str) -> None:  # noqa: F811
    out = tmp_path / "gateways.txt"
    units = demo_units(CITY)
    assert sorted(units) == sorted(["JJZD", *(f"{d}-32990{i}" for d in ("JJZD", "CGJ")
                                              for i in range(1, 5))])
    async with httpx.AsyncClient(transport=Into(client), base_url=ISSUER, headers={
            "Authorization": f"Bearer {admin_token}"}) as admin:
        assert sorted(await provision(admin, out, units)) == sorted(units)
        first = read_gateways(out)
        assert out.stat().st_mode & 0o777 == 0o600
        assert await provision(admin, out, units) == []  # a restart: nothing new
        assert read_gateways(out) == first
        # A revoked gateway (or a new database) gets a new client; the others are kept.
        revoked = await admin.post(f"/clients/{first['JJZD'][0]}/revoke")
        assert revoked.status_code == 200, revoked.text
        assert await provision(admin, out, units) == ["JJZD"]
        again = read_gateways(out)
        assert again["JJZD"] != first["JJZD"] and again["CGJ-329901"] == first["CGJ-329901"]

        cid, secret = again["JJZD"]
        signed_in = await admin.post("/oauth/token", data={"grant_type": "client_credentials"},
                                     auth=(cid, secret))
        assert signed_in.status_code == 200, signed_in.text
        claims = msgspec.json.decode(base64_part(signed_in.json()["access_token"]))
        assert claims["unit"] == "JJZD" and claims["scope"] == "staff:report"


def base64_part(jwt: str) -> bytes:
    payload = jwt.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
