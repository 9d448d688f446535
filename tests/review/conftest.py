"""The efficiency review under test, next to the event hub and dispatch (tests/dispatch), on
this run's database and NATS namespace, tokens from the same local issuer."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from dispatch.conftest import (  # noqa: F401  (fixtures shared with the dispatch tests)
    dispatch,
    events,
    events_issuer,
    watcher,
)
from litestar.testing import AsyncTestClient

from cityos_kit.auth import AuthPlugin, LocalIssuer
from cityos_review.app import build_app

LEADER = ("review:read", "review:admin", "cases:read")


@pytest.fixture(scope="module")
async def review(make_settings: Any, events_issuer: LocalIssuer  # noqa: F811
                 ) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = make_settings("review")
    app = build_app(settings, auth=AuthPlugin(settings, verifier=events_issuer.verifier(),
                                              rate_limit_per_minute=1_000_000))
    async with AsyncTestClient(app, timeout=60) as client:
        client.headers["Authorization"] = \
            f"Bearer {events_issuer.token(unit='CMD', scopes=LEADER)}"
        yield client
