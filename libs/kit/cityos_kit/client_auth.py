"""Calling another CityOS API as a machine client: OAuth 2.0 client credentials for httpx.

    http = httpx.AsyncClient(base_url=..., auth=ClientCredentials(issuer, client_id, secret))

The token is fetched on first use, reused until shortly before it expires, and fetched again
after a 401 (a revoked or rotated credential shows up there first).
"""

import asyncio
import time
from collections.abc import AsyncGenerator

import httpx

REFRESH_MARGIN_S = 30.0


class ClientCredentials(httpx.Auth):
    def __init__(self, issuer: str, client_id: str, client_secret: str,
                 scope: str | None = None) -> None:
        self.token_url = issuer.rstrip("/") + "/oauth/token"
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, force: bool = False) -> str:
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
