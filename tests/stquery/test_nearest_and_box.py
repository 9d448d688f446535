"""Nearest-k (mobile by fresh latest position, static by current state) and box select, over
HTTP and over NATS request/reply."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import pytest
from stquery.conftest import at, entity, write_entities, write_fixes

from cityos_contracts.records import MediaBatch, MediaItem
from cityos_contracts.stquery import (
    BoxQuery,
    BoxSelection,
    NearestQuery,
    NearestResult,
    QueryError,
)
from cityos_contracts.subjects import BOX_QUERY, NEAREST_QUERY

STAFF = "stq_near_staff"
SITES = "stq_near_sites"
CLIPS = "stq_near_clips"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
async def world(st: Any, store: Any) -> None:
    # Officers east of the origin at 100 m, 200 m, ... 900 m; O-3's position is stale.
    rows = [(f"O-{k}", NOW - timedelta(seconds=30), *at(100.0 * k, 0)) for k in range(1, 10)
            if k != 3]
    rows.append(("O-3", NOW - timedelta(hours=2), *at(300.0, 0)))
    # One 950 m north: nearer than O-10 east would be in degrees, farther in metres than O-9.
    rows.append(("O-N", NOW - timedelta(seconds=30), *at(0, 950.0)))
    await write_fixes(store, STAFF, rows)
    await write_entities(store, SITES, [
        entity("S-1", *at(50, 50), category="shelter"),
        entity("S-2", *at(-400, 0), category="hospital"),
        entity("S-3", *at(2000, 0), category="shelter"),
        entity("S-4", *at(120, 30), category="shelter", valid_from=NOW - timedelta(days=2)),
        entity("S-4", *at(120, 30), category="closed_shelter", valid_from=NOW - timedelta(days=1)),
    ])
    await store.write_media(MediaBatch(batch_id="stq-clips-1", dataset=CLIPS, version=1,
                                       owner="GAJ", items=[
        MediaItem(media_id="C-1", subject="CAM-1", ts=NOW - timedelta(minutes=5),
                  lon=at(150, 20)[0], lat=at(150, 20)[1], uri="s3://clips/1.mp4",
                  media_type="video/mp4")]))


async def test_nearest_officers_with_a_fresh_position(st: Any, world: None) -> None:
    lon, lat = at(0, 0)
    r = await st.post("/query/nearest", json={"dataset": STAFF, "lon": lon, "lat": lat, "k": 4,
                                              "max_age_s": 600})
    assert r.status_code == 200, r.text
    props = [f["properties"] for f in r.json()["features"]]
    assert [p["id"] for p in props] == ["O-1", "O-2", "O-4", "O-5"]  # O-3 is stale
    assert [round(p["distance_m"] / 100) for p in props] == [1, 2, 4, 5]
    assert [p["rank"] for p in props] == [1, 2, 3, 4]
    far = await st.post("/query/nearest", json={"dataset": STAFF, "lon": lon, "lat": lat,
                                                "k": 10})
    ids = [f["properties"]["id"] for f in far.json()["features"]]
    assert ids.index("O-9") < ids.index("O-N")  # metres, not degrees


async def test_nearest_static_entities_of_a_category_as_they_are_now(st: Any, world: None
                                                                      ) -> None:
    lon, lat = at(0, 0)
    r = await st.post("/query/nearest", json={"dataset": SITES, "kind": "static", "lon": lon,
                                              "lat": lat, "k": 5, "category": "shelter"})
    assert [f["properties"]["id"] for f in r.json()["features"]] == ["S-1", "S-3"]


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"k": 1000}, 400, "k"),
    ({"lat": 95.0}, 400, "lat"),
    ({"dataset": "stq_nobody"}, 404, "stq_nobody"),
])
async def test_bad_nearest_queries(st: Any, world: None, change: dict[str, Any], status: int,
                                   reason: str) -> None:
    lon, lat = at(0, 0)
    r = await st.post("/query/nearest", json={"dataset": STAFF, "lon": lon, "lat": lat} | change)
    assert r.status_code == status and reason in r.text, r.text


async def test_box_select_groups_everything_inside_by_kind(st: Any, world: None) -> None:
    (w, s), (e, n) = at(-50, -50), at(250, 100)
    r = await st.post("/query/box", json={"bbox": [w, s, e, n],
                                          "datasets": [STAFF, SITES, CLIPS]})
    assert r.status_code == 200, r.text
    body = r.json()
    groups = {(g["kind"], g["group"]): g["count"] for g in body["groups"]}
    assert groups == {("entity", f"{SITES}/shelter"): 1,
                      ("entity", f"{SITES}/closed_shelter"): 1,
                      ("mobile", STAFF): 2, ("media", CLIPS): 1}
    ids = sorted(f["properties"]["id"] for f in body["features"])
    assert ids == ["C-1", "O-1", "O-2", "S-1", "S-4"]
    capped = await st.post("/query/box", json={"bbox": [w, s, e, n], "datasets": [STAFF],
                                               "limit_per_group": 1})
    assert capped.json()["groups"] == [{"kind": "mobile", "group": STAFF, "count": 2,
                                        "returned": 1}]


async def test_box_select_refuses_a_self_intersecting_polygon(st: Any, world: None) -> None:
    bowtie = [[list(at(0, 0)), list(at(100, 100)), list(at(100, 0)), list(at(0, 100)),
               list(at(0, 0))]]
    r = await st.post("/query/box", json={"polygon": {"type": "Polygon", "coordinates": bowtie}})
    assert r.status_code == 422 and "Self-intersection" in r.json()["detail"]


async def test_other_services_ask_over_nats(st: Any, world: None, nats_prefix: str) -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        lon, lat = at(0, 0)
        reply = await nc.request(f"{nats_prefix}.{NEAREST_QUERY.pattern}", msgspec.json.encode(
            NearestQuery(dataset=STAFF, lon=lon, lat=lat, k=2)), timeout=10)
        nearest = msgspec.json.decode(reply.data, type=NearestResult)
        assert [f.properties.id for f in nearest.features] == ["O-1", "O-2"]
        (w, s), (e, n) = at(-50, -50), at(250, 100)
        reply = await nc.request(f"{nats_prefix}.{BOX_QUERY.pattern}", msgspec.json.encode(
            BoxQuery(bbox=[w, s, e, n], datasets=[STAFF])), timeout=10)
        box = msgspec.json.decode(reply.data, type=BoxSelection)
        assert {f.properties.id for f in box.features} == {"O-1", "O-2"}
        reply = await nc.request(f"{nats_prefix}.{BOX_QUERY.pattern}", msgspec.json.encode(
            BoxQuery(bbox=[179.0, 0.0, -179.0, 1.0])), timeout=10)
        error = msgspec.json.decode(reply.data, type=QueryError)
        assert error.status == 422 and "antimeridian" in error.detail
        reply = await nc.request(f"{nats_prefix}.{NEAREST_QUERY.pattern}", b'{"k": 3}',
                                 timeout=10)
        assert msgspec.json.decode(reply.data, type=QueryError).status == 400
    finally:
        await nc.close()
