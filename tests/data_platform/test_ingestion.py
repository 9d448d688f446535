"""Ingestion: formats, validation, dead letters, idempotency, and storage of what was accepted."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from data_platform.conftest import eventually, stored_of
from litestar.testing import AsyncTestClient

NOW = datetime.now(UTC).replace(microsecond=0)


def fix(plate: str, minutes_ago: float, lon: float = 120.9, lat: float = 32.0,
        **extra: Any) -> dict[str, Any]:
    ts = (NOW - timedelta(minutes=minutes_ago)).astimezone().isoformat()
    return {"plate": plate, "ts": ts, "lon": lon, "lat": lat, "speed": 10.0, **extra}


def ndjson(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(msgspec.json.encode(r) for r in rows) + b"\n"


async def push(client: AsyncTestClient[Any], body: bytes, content_type: str,
               dataset: str = "test_gps", **headers: str) -> Any:
    return await client.post(f"/datasets/{dataset}/records", content=body,
                             headers={"content-type": content_type, **headers})


async def test_a_batch_with_bad_records_accepts_the_good_and_explains_the_bad(
        ingestion: Any, gps_dataset: dict[str, Any], database_url: str) -> None:
    good = [fix("A-001", 30 - i) for i in range(5)]
    bad = [
        {**fix("A-002", 5), "ts": "2026-11-21T08:00:00"},             # no time zone
        fix("A-002", -60),                                              # an hour in the future
        fix("A-002", 4, lon=32.0, lat=120.9),                           # lat/lon swapped
        fix("A-002", 3, lon=116.4, lat=39.9),                           # Beijing: outside city
        good[0],                                                        # duplicate fix
        {**fix("A-002", 2), "lat": "north"},                            # wrong type
        fix("A-002", 1, colour="red"),                                  # extra field
        {**fix("A-002", 1), "plate": None},                             # missing subject
    ]
    response = await push(ingestion, ndjson(good + bad) + b"{not json\n", "application/x-ndjson")
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["received"], result["accepted"], result["rejected"]) == (14, 5, 9)
    assert result["reasons"] == {
        "no_time_zone": 1, "future_time": 1, "swapped_lon_lat": 1, "outside_city": 1,
        "duplicate": 1, "wrong_type": 2, "unknown_field": 1, "malformed": 1,
    }
    letters = (await ingestion.get("/datasets/test_gps/dead-letters",
                                   params={"batch_id": result["batch_id"]})).json()
    reasons = {letter["row_number"]: letter["reason"] for letter in letters}
    assert len(letters) == 9
    assert "no time zone" in reasons[6]
    assert "look swapped" in reasons[8]
    assert "`colour`" in reasons[12]
    assert "malformed JSON" in reasons[14]
    async def five_stored() -> bool:
        return await stored_of(database_url, "A-00_") == 5

    await eventually(five_stored)


async def test_speed_is_normalised_to_kmh_and_kept_with_the_latest_position(
        ingestion: Any, spatiotemporal: Any, gps_dataset: dict[str, Any]) -> None:
    response = await push(ingestion, ndjson([fix("SPD-1", 2), fix("SPD-1", 1, heading=90.0)]),
                          "application/x-ndjson")
    assert response.json()["accepted"] == 2

    async def latest_ready() -> bool:
        r = await spatiotemporal.get("/datasets/test_gps/subjects/SPD-1/latest")
        return r.status_code == 200 and r.json()["heading"] == 90.0

    await eventually(latest_ready)
    latest = (await spatiotemporal.get("/datasets/test_gps/subjects/SPD-1/latest")).json()
    assert abs(latest["speed_kmh"] - 36.0) < 1e-6  # 10 m/s


async def test_gbk_csv_is_read_and_header_problems_are_named(
        ingestion: Any, gps_dataset: dict[str, Any]) -> None:
    ts = NOW.astimezone().isoformat()
    csv_text = f"plate,ts,lon,lat,speed,driver\n苏F-00001,{ts},120.91,32.01,5,张三\n"
    response = await push(ingestion, csv_text.encode("gbk"), "text/csv; charset=gbk")
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    # Undeclared GBK is recognised too.
    response = await push(ingestion, csv_text.replace("00001", "00002").encode("gbk"), "text/csv")
    assert response.json()["accepted"] == 1

    missing = await push(ingestion, b"plate,lon,lat\nX,120.9,32.0\n", "text/csv")
    assert missing.status_code == 400
    assert "missing required column(s) `ts`" in missing.json()["detail"]
    extra = await push(ingestion, f"plate,ts,lon,lat,colour\nX,{ts},120.9,32,red\n".encode(),
                       "text/csv")
    assert extra.status_code == 400
    assert "`colour`" in extra.json()["detail"]


async def test_unusable_requests_get_a_clear_4xx(ingestion: Any,
                                                 gps_dataset: dict[str, Any]) -> None:
    malformed = await push(ingestion, b'[{"plate": "A"', "application/json")
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    unknown = await push(ingestion, b"[]", "application/json", dataset="no_such_dataset")
    assert unknown.status_code == 404 and "no_such_dataset" in unknown.json()["detail"]
    version = await ingestion.post("/datasets/test_gps/records?version=99", content=b"[{}]",
                                   headers={"content-type": "application/json"})
    assert version.status_code == 404 and "no version 99" in version.json()["detail"]
    wrong_type = await push(ingestion, b"plate\nA\n", "application/xml")
    assert wrong_type.status_code == 400 and "unsupported Content-Type" in wrong_type.text
    huge = await push(ingestion, b"[" + b" " * (200 * 1024 * 1024) + b"]", "application/json")
    assert huge.status_code == 413
    # ...and the service keeps serving.
    assert (await ingestion.get("/healthz")).status_code == 200
    assert (await push(ingestion, ndjson([fix("OK-1", 1)]), "application/x-ndjson")).json()[
        "accepted"] == 1


async def test_a_retried_batch_is_answered_once_and_stored_once(
        ingestion: Any, gps_dataset: dict[str, Any], database_url: str) -> None:
    body = ndjson([fix("IDEM-1", m) for m in range(10)])
    first = await push(ingestion, body, "application/x-ndjson", **{"Idempotency-Key": "k-1"})
    again = await push(ingestion, body, "application/x-ndjson", **{"Idempotency-Key": "k-1"})
    assert first.json()["duplicate"] is False and again.json()["duplicate"] is True
    assert again.json()["accepted"] == first.json()["accepted"] == 10
    async def ten_stored() -> bool:
        return await stored_of(database_url, "IDEM-1") == 10

    await eventually(ten_stored)


async def test_contribution_metrics_count_what_the_department_sent(
        ingestion: Any, gps_dataset: dict[str, Any]) -> None:
    await push(ingestion, ndjson([fix("CONTRIB-1", 1), {**fix("CONTRIB-1", 2), "lat": "x"}]),
               "application/x-ndjson")
    metrics = (await ingestion.get("/contribution", params={"department": "JTJ",
                                                            "dataset": "test_gps"})).json()
    assert len(metrics) == 1
    m = metrics[0]
    assert m["received"] == m["accepted"] + m["rejected"] and m["rejected"] >= 1
    assert 0 < m["validity_rate"] < 1
    assert m["freshness_mean_s"] > 0 and m["freshness_max_s"] >= m["freshness_mean_s"]


async def test_a_gbk_file_imports_in_batches_and_a_rerun_stores_nothing_twice(
        ingestion: Any, gps_dataset: dict[str, Any], tmp_path: Any) -> None:
    from cityos_ingestion.bulk_import import import_file

    ts = NOW.astimezone().isoformat()
    lines = [f"苏F-{i:05d},{ts},120.9,32.0,3" for i in range(25)] + ["苏F-X,not-a-time,120.9,32,3"]
    path = tmp_path / "export.csv"
    path.write_bytes(("plate,ts,lon,lat,speed\n" + "\n".join(lines) + "\n").encode("gbk"))
    totals, reasons = await import_file(ingestion, path, "test_gps", encoding="gbk",
                                        batch_rows=10)
    assert (totals["received"], totals["accepted"], totals["rejected"]) == (26, 25, 1)
    assert reasons == {"bad_value": 1}
    again, _ = await import_file(ingestion, path, "test_gps", encoding="gbk", batch_rows=10)
    assert again == totals
    batch = (await ingestion.get(f"/batches/import-{_digest(path)}-10-0")).json()
    assert batch["duplicate"] is True and batch["accepted"] == 10


def _digest(path: Any) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


async def test_a_ragged_csv_row_and_out_of_order_fixes(
        ingestion: Any, spatiotemporal: Any, gps_dataset: dict[str, Any]) -> None:
    late, early = fix("ORDER-1", 1), fix("ORDER-1", 9)
    csv_text = "plate,ts,lon,lat\n" + "\n".join([
        f"{late['plate']},{late['ts']},120.9,32.0",
        f"{early['plate']},{early['ts']},120.91,32.01",   # older fix arrives after a newer one
        "ORDER-1,2026-11-21T08:00:00+08:00,120.9",        # one value short
    ]) + "\n"
    result = (await push(ingestion, csv_text.encode(), "text/csv")).json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    letters = (await ingestion.get("/datasets/test_gps/dead-letters",
                                   params={"batch_id": result["batch_id"]})).json()
    assert letters[0]["row_number"] == 3 and "3 values for 4 columns" in letters[0]["reason"]

    async def newest_kept() -> bool:
        r = await spatiotemporal.get("/datasets/test_gps/subjects/ORDER-1/latest")
        return r.status_code == 200 and r.json()["lon"] == 120.9

    await eventually(newest_kept)  # the late-arriving older fix did not replace the newest


async def test_nul_characters_are_refused_not_stored(ingestion: Any,
                                                     gps_dataset: dict[str, Any]) -> None:
    rows = [fix("NUL-1", 1), {**fix("NUL-1", 2), "plate": "NUL\u00002"}]
    refused = await push(ingestion, msgspec.json.encode(rows), "application/json")
    assert refused.status_code == 400 and "NUL" in refused.json()["detail"]
    query = await ingestion.get("/datasets", params={"owner": "JTJ\x00"})
    assert query.status_code == 400 and "NUL" in query.json()["detail"]
