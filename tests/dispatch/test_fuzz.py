"""Schemathesis fuzzing of dispatch's API as the command center: no 5xx, every 4xx with a
reason."""

from typing import Any

import asyncpg
from dispatch.conftest import CENTER, FIELD_STAFF
from fuzzing import fuzz

from cityos_kit.auth import LocalIssuer


async def test_dispatch_api_fuzz(dispatch: Any, events_issuer: LocalIssuer,
                                 database_url: str) -> None:
    token = events_issuer.token(unit="CMD", scopes=(*CENTER, *FIELD_STAFF),
                                roles=("field_staff",))
    try:
        failures, statuses = await fuzz(dispatch, lambda case: token, max_examples=10)
    finally:
        # The fuzzer edits and retires rules and declares emergencies over the city: undo
        # that for the modules after this one (the next dispatch seeds the rules again).
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DELETE FROM dispatch.rule_versions; DELETE FROM dispatch.rules;"
                               " UPDATE dispatch.emergencies SET ended_at = now()"
                               " WHERE ended_at IS NULL")
        finally:
            await conn.close()
    assert failures == [], failures
    assert any(key.endswith(" 200") for key in statuses), statuses
