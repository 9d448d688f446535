"""Calling another CityOS API as a machine client: OAuth 2.0 client credentials for httpx.

    http = httpx.AsyncClient(base_url=..., auth=ClientCredentials(issuer, client_id, secret))

The token is fetched on first use, renewed in the background in its last RENEW_AHEAD_S (the
calls meanwhile go with the current one: none waits for the issuer), fetched at once when it
is about to expire, and fetched again after a 401 (a revoked or rotated credential shows up
there first).
"""

import asyncio
import time
from collections.abc import AsyncGenerator

import httpx

REFRESH_MARGIN_S = 30.0
RENEW_AHEAD_S = 120.0


class ClientCredentials(httpx.Auth):
    def __init__(self, issuer: str, client_id: str, client_secret: str,
                 scope: str | None = None) -> None:
        self.token_url = issuer.rstrip("/") + "/oauth/token"
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._renewal: asyncio.Task[str] | None = None
        self._renew_after = 0.0

    async def token(self, force: bool = False) -> str:
        left = self._expires_at - time.time()
        if not force and self._token is not None and left > REFRESH_MARGIN_S:
            if left < RENEW_AHEAD_S and time.monotonic() >= self._renew_after:
                # A failed renewal is tried again 10 s later; at the margin, calls wait.
                self._renew_after = time.monotonic() + 10.0
                self._renewal = asyncio.create_task(self.token(force=True))
                self._renewal.add_done_callback(_ignore_failure)
            return self._token
        async with self._lock:
            if force or self._token is None or time.time() > self._expires_at - REFRESH_MARGIN_S:
                form = {"grant_type": "client_credentials"} | ({"scope": self.scope}
                                                                if self.scope else {})
                async with httpx.AsyncClient(timeout=10) as http:
                    response = await http.post(self.token_url, data=form,
                                               auth=(self.client_id, self.client_secret))
                if response.status_code != 200:
                    raise PermissionError(f"token request refused by {self.token_url}: "
                                          f"{response.status_code} {response.text[:300]}")
                body = response.json()
                self._token = str(body["access_token"])
                self._expires_at = time.time() + float(body.get("expires_in", 300))
            return self._token

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {await self.token()}"
        response = yield request
        if response.status_code == 401:
            request.headers["Authorization"] = f"Bearer {await self.token(force=True)}"
            yield request


def _ignore_failure(task: "asyncio.Task[str]") -> None:
    if not task.cancelled():
        task.exception()  # (retrieved: a failed renewal is retried, not an unhandled error)
