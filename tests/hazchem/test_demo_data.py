"""The demo scenario's files load through ingestion as a department's would: every registration
accepted, every entity stored, and the only GPS rejections the planted noise (exact duplicates and
wild outliers far outside the city)."""

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from data_platform.conftest import eventually, ingestion, issuer, spatiotemporal  # noqa: F401
from stquery.conftest import st, store  # noqa: F401

from cityos_hazchem import demo, scenario
from cityos_hazchem.app import declared_trips
from cityos_hazchem.rules import Thresholds

TYPES = {".csv": "text/csv", ".geojson": "application/geo+json"}


async def test_demo_data_loads_through_ingestion(
        ingestion: Any, spatiotemporal: Any, st: Any, tmp_path: Path) -> None:  # noqa: F811
    sc = scenario.generate(copies=1)
    day = demo.default_day(sc, datetime(2026, 11, 22, 12, tzinfo=UTC))
    assert day < date(2026, 11, 22)
    files = demo.write(sc, tmp_path, day)
    assert list(files) == [demo.ENTERPRISES, demo.POIS, demo.VEHICLES, demo.TRIPS, demo.GPS]
    results = {}
    for name, path in files.items():
        r = await ingestion.post("/datasets", headers={"content-type": "application/json"},
                                 content=(tmp_path / f"{name}.registration.json").read_bytes())
        assert r.status_code in (200, 201), r.text
        r = await ingestion.post(f"/datasets/{name}/records", content=path.read_bytes(),
                                 headers={"content-type": TYPES[path.suffix]})
        assert r.status_code == 200, r.text
        results[name] = r.json()
    for name in (demo.ENTERPRISES, demo.POIS, demo.VEHICLES, demo.TRIPS):
        assert results[name]["rejected"] == 0, (name, results[name])
    gps = results[demo.GPS]
    fixes = sum(len(tr.t) for tr in sc.tracks)
    assert gps["received"] == fixes and gps["accepted"] > 0.95 * fixes
    assert set(gps["reasons"]) <= {"duplicate", "outside_city"}, gps["reasons"]

    at = datetime.combine(day, datetime.max.time(), scenario.LOCAL).isoformat()

    async def vehicles() -> dict[str, Any]:
        fc = (await st.get(f"/datasets/{demo.VEHICLES}/entities", params={"at": at})).json()
        return {f["properties"]["entity_id"]: f["properties"]["attrs"] for f in fc["features"]}

    listed = await eventually(vehicles, timeout=30)
    assert {v for v, ok in sc.licensed.items() if not ok} == \
        {v for v, attrs in listed.items() if attrs["licensed"] is False}

    # The declared trips as live warnings read them (now, every page): each readable, with
    # its vehicle, its route and its planned time span.
    async def up(method: str, path: str, body: Any, params: dict[str, str] | None,
                 token: str | None) -> Any:
        r = await st.request(method, path, json=body, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def trips() -> list[Any]:
        got = await declared_trips(up, [demo.TRIPS], datetime.now(UTC), None,
                                   ZoneInfo(Thresholds().timezone))
        return got if len(got) == len(sc.trips) else []

    read = {t.vehicle: t for t in await eventually(trips, timeout=30)}
    for planned in sc.trips:
        t = read[planned.vehicle]
        assert t.end - t.start == pytest.approx(planned.end - planned.start, abs=1e-3)
        assert [*t.lon, *t.lat] == pytest.approx([*planned.lon, *planned.lat], abs=1e-6)
