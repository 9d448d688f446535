"""The event hub's HTTP API, as dispatch calls it.

Dispatch never changes a case's status itself: it asks the hub (`POST /cases/{id}/{action}`),
which checks the transition and records who did it. Automatic steps (dispatch after acceptance,
escalation, reopening on a bad rating) go with dispatch's own service token (client
credentials); a unit's action goes with the caller's own bearer token, so the hub checks that
unit's rights and records that person as the actor.

Why HTTP rather than a NATS request the hub answers: the hub already has these routes with
their checks (scope, unit, transition, expected_version) and audit; a second door on NATS would
duplicate them. Every call sends `expected_version` where it matters, so a retried call after a
lost answer is refused (409) instead of applied twice.
"""

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import httpx
import msgspec

from cityos_contracts.cases import CaseDetail
from cityos_kit.telemetry import inject_headers


class HubRefused(Exception):
    """The hub answered 4xx: the action is not allowed (the caller's fault, or a race)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"event hub refused ({status}): {detail}")
        self.status = status
        self.detail = detail


class HubUnavailable(Exception):
    """The hub did not answer or failed (5xx): retry later."""


class Bearer(httpx.Auth):
    """A fixed bearer token (the caller's own, passed through)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


_detail = msgspec.json.Decoder(CaseDetail)


class EventHub:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _send(self, method: str, path: str, body: dict[str, Any] | None,
                    token: str | None) -> bytes:
        auth: Any = Bearer(token) if token else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self.http.request(
                method, path, content=None if body is None else msgspec.json.encode(body),
                headers=inject_headers({"content-type": "application/json"}), auth=auth)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"event hub unreachable: {exc!r}") from exc
        except PermissionError as exc:  # the service's token was refused by the issuer
            raise HubUnavailable(str(exc)) from exc
        if response.status_code >= 500:
            raise HubUnavailable(f"event hub failed ({response.status_code}): "
                                 f"{response.text[:300]}")
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", response.text))
            except ValueError:
                detail = response.text[:300]
            raise HubRefused(response.status_code, detail)
        return response.content

    async def act(self, case_id: int, action: str, *, reason: str = "",
                  unit: str | None = None, expected_version: int | None = None,
                  token: str | None = None) -> CaseDetail:
        body: dict[str, Any] = {"reason": reason}
        if unit is not None:
            body["unit"] = unit
        if expected_version is not None:
            body["expected_version"] = expected_version
        return _detail.decode(await self._send("POST", f"/cases/{case_id}/{action}", body, token))

    async def warm(self) -> None:
        """Connect and get the service's token now (a probe of the hub's health), so the first
        case after a start does not wait for them; failing is fine: the first call retries."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.http.get("/healthz"), timeout=10)

    async def case(self, case_id: int, token: str | None = None) -> CaseDetail:
        return _detail.decode(await self._send("GET", f"/cases/{case_id}", None, token))
