"""The hazchem service end to end: the planted scenario written to the spatio-temporal store,
`POST /warnings/compute` reading it back through the spatio-temporal HTTP API (as the caller),
the warnings matching the ground truth, and each new one posted once on `reports.system`."""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import pytest
from data_platform.conftest import issuer, spatiotemporal  # noqa: F401
from litestar.testing import AsyncTestClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from stquery.conftest import entity, st, store, write_entities, write_fixes  # noqa: F401

from cityos_hazchem import rules, scenario
from cityos_hazchem.app import build_app
from cityos_kit.auth import AuthPlugin
from cityos_kit.bus import Bus

GPS, FIRMS, POIS = "hz_gps", "hz_firms", "hz_pois"


@pytest.fixture(scope="module")
async def planted(st: Any, store: Any) -> scenario.Scenario:  # noqa: F811
    sc = scenario.generate(copies=1)
    rows = [(tr.vehicle, datetime.fromtimestamp(float(t), UTC), float(x), float(y))
            for tr in sc.tracks for t, x, y in zip(tr.t, tr.lon, tr.lat, strict=True)
            if abs(x) > 1e-6 and -180 <= x <= 180 and -90 <= y <= 90]
    await write_fixes(store, GPS, rows)
    e = sc.enterprises
    await write_entities(store, FIRMS, [
        entity(str(e.id[i]), float(e.lon[i]), float(e.lat[i]), category=str(e.kind[i]),
               status=str(e.status[i]),
               **({"valid_from": datetime.fromtimestamp(float(e.status_since[i]), UTC)}
                  if e.status[i] != "operating" else {}))
        for i in range(len(e))])
    p = sc.pois
    await write_entities(store, POIS, [entity(str(p.id[i]), float(p.lon[i]), float(p.lat[i]),
                                              category=str(p.kind[i])) for i in range(len(p))])
    return sc


@pytest.fixture(scope="module")
async def hazchem(make_settings: Any, issuer: Any, st: Any) -> Any:  # noqa: F811
    async def upstream(method: str, path: str, body: Any, params: dict[str, str] | None,
                       token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await st.request(method, path, json=body, params=params, headers=headers)
        assert r.status_code < 400, (path, r.text)
        return r.json()

    settings = make_settings("hazchem")
    app = build_app(settings, auth=AuthPlugin(settings, verifier=issuer.verifier()),
                    upstream=upstream)
    async with AsyncTestClient(app, timeout=120) as client:
        yield client


def _headers(issuer: Any, *scopes: str) -> dict[str, str]:  # noqa: F811
    return {"Authorization": f"Bearer {issuer.token(scopes=scopes)}"}


async def _stored_reports(bus: Any) -> int:
    """Messages on this run's REPORTS stream (their content is checked against `ReportIn` in
    test_warnings_quality)."""
    info = await bus.js.stream_info(bus.settings.stream_prefix + "_REPORTS")
    return int(info.state.messages)


async def _reports(bus: Any) -> list[dict[str, Any]]:
    sub = await bus.js.pull_subscribe(bus.subject("reports.system"), durable=None,
                                      config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    found: list[dict[str, Any]] = []
    try:
        while True:
            found += [msgspec.json.decode(m.data) for m in await sub.fetch(100, timeout=1)]
    except (nats.errors.TimeoutError, TimeoutError):  # no more (nats-py raises either)
        pass
    finally:
        await sub.unsubscribe()
    return [m for m in found if str(m.get("idempotency_key", "")).startswith("hazchem:")]


async def test_compute_matches_truth_and_posts_each_warning_once(
        hazchem: Any, planted: scenario.Scenario, issuer: Any,  # noqa: F811
        make_settings: Any) -> None:
    day = scenario.DAY
    body = {"dataset": GPS, "start": day.isoformat(),
            "end": (day + timedelta(days=1)).isoformat(), "enterprise_datasets": [FIRMS],
            "poi_datasets": [POIS], "unlicensed": ["UNLIC-0"]}
    headers = _headers(issuer, "hazchem:read", "stquery:read")
    bus = Bus(make_settings("hazchem-test"))  # this loop's own connection, same namespace
    await bus.connect()
    before = await _stored_reports(bus)
    r = await hazchem.post("/warnings/compute", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    got = {(w["vehicle"], w["kind"]) for w in out["warnings"]}
    want = {(v, k) for v, kinds in planted.truth.items() for k in kinds}
    assert got == want
    assert {k for _, k in got} == set(rules.KINDS)
    assert out["posted"] == len(out["warnings"])
    assert await _stored_reports(bus) == before + len(out["warnings"])
    # Re-computing the window posts nothing new.
    again = await hazchem.post("/warnings/compute", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["posted"] == 0
    assert len(again.json()["warnings"]) == len(out["warnings"])
    assert await _stored_reports(bus) == before + len(out["warnings"])
    reports = await _reports(bus)
    assert sorted(m["idempotency_key"] for m in reports) == sorted(
        f"hazchem:{w['kind']}:{w['vehicle']}:{int(datetime.fromisoformat(w['start']).timestamp())}"
        for w in out["warnings"])
    assert all(m["channel"] == "system" and m["category"] == "0803" for m in reports)
    await bus.close()


async def test_compute_needs_the_hazchem_scope(hazchem: Any, issuer: Any) -> None:  # noqa: F811
    r = await hazchem.post("/warnings/compute", json={
        "dataset": GPS, "start": "2026-06-01T00:00:00+08:00", "end": "2026-06-02T00:00:00+08:00"},
        headers=_headers(issuer, "stquery:read"))
    assert r.status_code == 403, r.text
