"""The write side: entities keep their history, media metadata, NATS intake, crash safety."""

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import nats
from data_platform.conftest import eventually, platform_app, stored_of
from data_platform.test_ingestion import fix, ndjson, push
from litestar.testing import AsyncTestClient

from cityos_contracts.datasets import DatasetRegistration, FieldMapping, FieldSpec
from cityos_contracts.records import RawRecordBatch

ENTERPRISES = DatasetRegistration(
    name="test_enterprises", title="Hazardous-goods enterprises", owner="YJJ", kind="entity",
    fields=[FieldSpec("id", "string", required=True), FieldSpec("name", "string"),
            FieldSpec("status", "string"), FieldSpec("changed", "datetime"),
            FieldSpec("geometry", "geometry", required=True)],
    mapping=FieldMapping(subject="id", name="name", category="status", time="changed",
                         geometry="geometry"),
)
CLIPS = DatasetRegistration(
    name="test_clips", title="Camera clips", owner="GAJ", kind="media",
    fields=[FieldSpec("camera_id", "string", required=True), FieldSpec("ts", "datetime", True),
            FieldSpec("lon", "number"), FieldSpec("lat", "number"), FieldSpec("uri", "string"),
            FieldSpec("label", "string")],
    mapping=FieldMapping(subject="camera_id", time="ts", lon="lon", lat="lat", uri="uri"),
)


async def register(client: AsyncTestClient[Any], reg: DatasetRegistration) -> None:
    response = await client.post("/datasets", content=msgspec.json.encode(reg),
                                 headers={"content-type": "application/json"})
    assert response.status_code in (200, 201), response.text


def enterprise(status: str, changed: str) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [120.95, 32.05]},
            "properties": {"id": "E-1", "name": "示范化工", "status": status, "changed": changed}}


async def test_an_enterprise_that_closes_keeps_its_past(ingestion: Any,
                                                        spatiotemporal: Any) -> None:
    await register(ingestion, ENTERPRISES)
    for feature in (enterprise("operating", "2025-01-01T00:00:00+08:00"),
                    enterprise("closed", "2026-06-01T00:00:00+08:00")):
        body = msgspec.json.encode({"type": "FeatureCollection", "features": [feature]})
        result = (await push(ingestion, body, "application/geo+json",
                             dataset="test_enterprises")).json()
        assert result["accepted"] == 1, result

    async def two_states() -> bool:
        r = await spatiotemporal.get("/datasets/test_enterprises/entities/E-1/history")
        return r.status_code == 200 and len(r.json()["features"]) == 2

    await eventually(two_states)
    history = (await spatiotemporal.get(
        "/datasets/test_enterprises/entities/E-1/history")).json()["features"]
    assert [f["properties"]["category"] for f in history] == ["operating", "closed"]
    assert history[0]["properties"]["valid_to"] == history[1]["properties"]["valid_from"]
    then = (await spatiotemporal.get("/datasets/test_enterprises/entities",
                                     params={"at": "2025-06-01T00:00:00Z"})).json()
    now = (await spatiotemporal.get("/datasets/test_enterprises/entities")).json()
    assert then["features"][0]["properties"]["category"] == "operating"
    assert now["features"][0]["properties"]["category"] == "closed"
    assert now["features"][0]["geometry"]["coordinates"] == [120.95, 32.05]


async def test_invalid_geometry_is_a_dead_letter(ingestion: Any) -> None:
    await register(ingestion, ENTERPRISES)
    bowtie = {"type": "Polygon", "coordinates": [[[120.9, 32.0], [120.91, 32.01],
                                                  [120.91, 32.0], [120.9, 32.01], [120.9, 32.0]]]}
    body = msgspec.json.encode({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": bowtie, "properties": {"id": "E-BAD"}}]})
    result = (await push(ingestion, body, "application/geo+json",
                         dataset="test_enterprises")).json()
    assert result["rejected"] == 1 and result["reasons"] == {"bad_geometry": 1}


async def test_camera_clip_metadata_is_kept_with_its_reference(ingestion: Any,
                                                               spatiotemporal: Any) -> None:
    await register(ingestion, CLIPS)
    ts = datetime.now(UTC).isoformat()
    rows = [{"camera_id": "CAM-7", "ts": ts, "lon": 120.8, "lat": 31.95,
             "uri": "s3://clips/cam7/1.mp4", "label": "street vending"}]
    result = (await push(ingestion, msgspec.json.encode(rows), "application/json",
                         dataset="test_clips")).json()
    assert result["accepted"] == 1
    missing_uri = (await push(ingestion, msgspec.json.encode([{**rows[0], "uri": None}]),
                              "application/json", dataset="test_clips")).json()
    assert missing_uri["rejected"] == 1


async def test_records_published_on_nats_are_validated_and_stored(
        ingestion: Any, spatiotemporal: Any, gps_dataset: dict[str, Any],
        nats_prefix: str, database_url: str) -> None:
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    batch = RawRecordBatch(dataset="test_gps", version=1, batch_id="nats-batch-1",
                           records=[fix("NATS-1", m) for m in range(3)] + [{"plate": "X"}])
    for _ in range(2):  # published twice: stored once
        await js.publish(f"{nats_prefix}.ingest.raw.test_gps", msgspec.json.encode(batch))
    await nc.close()
    async def three_stored() -> bool:
        return await stored_of(database_url, "NATS-1") == 3

    await eventually(three_stored)
    result = (await ingestion.get("/batches/nats-batch-1")).json()
    assert (result["received"], result["accepted"], result["rejected"]) == (4, 3, 1)


async def test_killing_the_storage_consumer_mid_stream_loses_and_doubles_nothing(
        ingestion: Any, gps_dataset: dict[str, Any], make_settings: Any,
        database_url: str, issuer: Any) -> None:
    """A second store instance is stopped while batches stream in, then restarted."""
    start = datetime.now(UTC) - timedelta(hours=2)
    accepted = 0

    async def send(first: int, count: int) -> None:
        nonlocal accepted
        for b in range(first, first + count):
            rows = [fix(f"KILL-{v}", 0, lon=120.8 + v * 0.001) | {
                "ts": (start + timedelta(seconds=b * 10)).isoformat()} for v in range(200)]
            result = (await push(ingestion, ndjson(rows), "application/x-ndjson")).json()
            accepted += result["accepted"]

    async def all_stored() -> bool:
        return await stored_of(database_url, "KILL-%") == accepted

    async with AsyncTestClient(platform_app("spatiotemporal", make_settings, issuer)):
        await send(0, 20)
    # The consumer was stopped wherever it was; more data arrives while it is down.
    await send(20, 20)
    async with AsyncTestClient(platform_app("spatiotemporal", make_settings, issuer)):
        await eventually(all_stored, timeout=90)
    conn = await asyncpg.connect(database_url)
    dupes = await conn.fetchval(
        "SELECT count(*) - count(DISTINCT (subject, ts)) FROM spatiotemporal.observations"
        " WHERE dataset = 'test_gps' AND subject LIKE 'KILL-%'")
    await conn.close()
    assert accepted == 40 * 200
    assert dupes == 0
