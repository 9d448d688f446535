"""Hazchem reads a registered dataset whole, however many pages the entity listing takes."""

from datetime import UTC, datetime
from typing import Any

from data_platform.conftest import issuer, spatiotemporal  # noqa: F401
from stquery.conftest import entity, st, store, write_entities  # noqa: F401

from cityos_hazchem.entities import listing


async def test_listing_pages_through_every_entity(st: Any, store: Any,  # noqa: F811
                                                  issuer: Any) -> None:  # noqa: F811
    await write_entities(store, "hz_many", [entity(f"E-{i:03d}", 120.9, 32.0, status="operating")
                                            for i in range(25)])
    calls = []

    async def up(method: str, path: str, body: Any, params: dict[str, str] | None,
                 token: str | None) -> Any:
        calls.append(params)
        r = await st.request(method, path, params=params, headers={
            "Authorization": f"Bearer {issuer.token(scopes=('stquery:read',))}"})
        assert r.status_code == 200, r.text
        return r.json()

    got = await listing(up, "hz_many", datetime.now(UTC), None, page=10)
    assert [f["properties"]["entity_id"] for f in got] == [f"E-{i:03d}" for i in range(25)]
    assert len(calls) == 3 and calls[2] is not None and calls[2]["after"] == "E-019"
    # A page exactly full asks once more and gets nothing.
    assert len(await listing(up, "hz_many", datetime.now(UTC), None, page=5)) == 25
