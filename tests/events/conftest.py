"""The event hub under test: the app in this process, this run's database and NATS namespace,
tokens from a local issuer."""

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from cityos_events.app import build_app
from cityos_events.config import EventsSettings
from cityos_kit.auth import AuthPlugin, LocalIssuer

# The command center's operator: every case scope.
OPERATOR = ("cases:read", "cases:act", "cases:dispatch", "cases:report")
SYSTEM_SCOPES = ("cases:report",)


@pytest.fixture(scope="session")
def events_issuer() -> LocalIssuer:
    return LocalIssuer()


def token(issuer: LocalIssuer, unit: str = "CMD", scopes: tuple[str, ...] = OPERATOR,
          **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.token(unit=unit, scopes=scopes, **claims)}"}


@pytest.fixture(scope="session")
async def events(make_settings: Any, events_issuer: LocalIssuer
                 ) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = make_settings("events")
    app = build_app(settings, auth=AuthPlugin(settings, verifier=events_issuer.verifier(),
                                              rate_limit_per_minute=1_000_000),
                    events_settings=EventsSettings())
    async with AsyncTestClient(app, timeout=60) as client:
        client.headers.update(token(events_issuer))
        yield client


_points = itertools.product([120.72 + 0.03 * i for i in range(12)],
                            [31.92 + 0.03 * j for j in range(8)])


def fresh_point() -> tuple[float, float]:
    """A point of the city no other test reports at (2–3 km apart): no accidental merges."""
    return next(_points)


def report(text: str, point: tuple[float, float] | None = None, *, channel: str = "citizen_app",
           minutes_ago: float = 5, **extra: Any) -> dict[str, Any]:
    """A report body; at a fresh point unless given one (None in `extra`'s address case)."""
    body: dict[str, Any] = {
        "channel": channel, "text": text,
        "reported_at": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(),
        **extra}
    if "address" not in extra or point is not None:
        lon, lat = point or fresh_point()
        body |= {"lon": lon, "lat": lat}
    return body


async def post_report(client: AsyncTestClient[Any], body: dict[str, Any],
                      expected: int = 201) -> dict[str, Any]:
    response = await client.post("/reports", json=body)
    assert response.status_code == expected, response.text
    answer: dict[str, Any] = response.json()
    return answer
