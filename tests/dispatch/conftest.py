"""Dispatch under test: the event hub and dispatch apps in this process, dispatch calling the
hub over HTTP (an ASGI transport into the hub's app) with a service token of the same local
issuer, this run's database and NATS namespace, and deadlines 500 times shorter than the city's
(30 minutes to accept → 3.6 s)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import msgspec
import nats
import pytest
from events.conftest import (  # noqa: F401  (fixtures shared with the event-hub tests)
    OPERATOR,
    events,
    events_issuer,
    post_report,
    report,
    token,
)
from litestar.testing import AsyncTestClient

from cityos_contracts.dispatch import DispatchEvent
from cityos_dispatch.app import build_app
from cityos_dispatch.config import DispatchSettings
from cityos_dispatch.hub import Bearer
from cityos_dispatch.staff import FIELD_STAFF_DATASET
from cityos_kit.auth import AuthPlugin, LocalIssuer

SCALE = 0.002
OPTIONS = DispatchSettings(time_scale=SCALE, tick_s=0.05, remind_at=0.5, position_flush_s=0.2,
                           query_timeout_s=10, reopen_window_h=1.0)
SERVICE_SCOPES = ("cases:read", "cases:act", "cases:dispatch", "stquery:read")
# The command center's operator, with dispatch's scopes too.
CENTER = (*OPERATOR, "dispatch:rules", "staff:report")
UNIT_STAFF = ("cases:read", "cases:act")
FIELD_STAFF = ("cases:read", "cases:act", "cases:report", "staff:report")
# Points 1.5 km or more from the event-hub tests' (fresh_point): no accidental merges; none
# in street 329903003, whose search results the event-hub tests page through.
_points = iter([(lon, lat) for k in (0, 1) for j in range(8) for i in range(12)
                for lon, lat in [(round(120.735 + 0.03 * i - 0.015 * k, 4),
                                  round(31.935 + 0.03 * j, 4))]
                if not (lon >= 121.03 and lat <= 32.03)])


def spot() -> tuple[float, float]:
    """A point of the city no other test reports at."""
    return next(_points)


class HubTransport(httpx.AsyncBaseTransport):
    """Requests into the hub's test client. Each test client runs its app on a loop of its own
    (a blocking portal), so the call is made from a worker thread, not on dispatch's loop."""

    def __init__(self, hub: AsyncTestClient[Any]) -> None:
        self.inner: Any = hub._transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        response: httpx.Response = await asyncio.to_thread(self.inner.handle_request, request)
        return response


def dispatch_app(make_settings: Any, issuer: LocalIssuer, hub: AsyncTestClient[Any],
                 options: DispatchSettings = OPTIONS) -> Any:
    settings = make_settings("dispatch")
    service = issuer.token(sub="dispatch-service", unit="CMD", scopes=SERVICE_SCOPES,
                           lifetime_s=86400)
    http = httpx.AsyncClient(transport=HubTransport(hub),
                             base_url="http://events", auth=Bearer(service), timeout=30)
    return build_app(settings, auth=AuthPlugin(settings, verifier=issuer.verifier(),
                                               rate_limit_per_minute=1_000_000),
                     dispatch_settings=options, hub_http=http)


@contextlib.asynccontextmanager
async def running_dispatch(make_settings: Any, issuer: LocalIssuer, hub: AsyncTestClient[Any],
                           options: DispatchSettings = OPTIONS
                           ) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(dispatch_app(make_settings, issuer, hub, options),
                               timeout=60) as client:
        client.headers.update(token(issuer, scopes=CENTER))
        yield client


@pytest.fixture(scope="module")
async def dispatch(make_settings: Any, events_issuer: LocalIssuer,  # noqa: F811
                   events: AsyncTestClient[Any]) -> AsyncIterator[AsyncTestClient[Any]]:  # noqa: F811
    async with running_dispatch(make_settings, events_issuer, events) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20) -> Any:
    """The first truthy answer of `check()` (consumers are asynchronous); fail after timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def accepted_case(events: AsyncTestClient[Any], text: str, point: tuple[float, float],  # noqa: F811
                        category: str) -> int:
    """A report of a known category at `point`, accepted by the center: dispatch takes over."""
    receipt = await post_report(events, report(text, point, category=category))
    response = await events.post(f"/cases/{receipt['case_id']}/accept", json={"reason": "属实"})
    assert response.status_code == 200, response.text
    case_id: int = receipt["case_id"]
    return case_id


async def assignment(dispatch: AsyncTestClient[Any], case_id: int,
                     state: str = "dispatched") -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        response = await dispatch.get(f"/assignments/{case_id}")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["state"] == state else None

    answer: dict[str, Any] = await eventually(found)
    return answer


class Watcher:
    """Collects this run's dispatch events (and any other subject) from NATS."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def dispatch_events(self, case_id: int) -> list[DispatchEvent]:
        return [msgspec.json.decode(data, type=DispatchEvent) for subject, data in self.messages
                if subject.endswith(f"dispatch.events.{case_id}")]

    def on(self, suffix: str) -> list[bytes]:
        return [data for subject, data in self.messages if subject.endswith(suffix)]


@pytest.fixture(scope="module")
async def watcher(nats_prefix: str) -> AsyncIterator[Watcher]:
    import os

    nc = await nats.connect(os.environ.get("CITYOS_NATS_URL", "nats://127.0.0.1:4222"))
    found = Watcher()

    async def on_message(msg: Any) -> None:
        found.messages.append((msg.subject, msg.data))

    for subject in ("dispatch.>", "feedback.>"):
        await nc.subscribe(f"{nats_prefix}.{subject}", cb=on_message)
    yield found
    await nc.close()


@pytest.fixture(scope="module")
async def staff_dataset(ingestion: AsyncTestClient[Any],
                        spatiotemporal: AsyncTestClient[Any]) -> None:
    """The field-staff positions dataset registered (the test module brings the data platform's
    `ingestion` and `spatiotemporal` fixtures)."""
    response = await ingestion.post("/datasets", content=msgspec.json.encode(FIELD_STAFF_DATASET),
                                    headers={"content-type": "application/json"})
    assert response.status_code in (200, 201), response.text
