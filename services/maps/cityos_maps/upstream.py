"""Calls to the other services: as the signed-in person (their token, their rights) or as this
service (its own client, for what every screen shares), with a short cache for the latter.

A service that is down or not deployed yet (dispatch, review) is not an error of the screens:
`Unavailable` becomes a 503 naming the service, and shared figures fall back or show "—".
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx
from litestar.exceptions import HTTPException

from cityos_kit.client_auth import ClientCredentials
from cityos_kit.telemetry import logger
from cityos_maps.config import MapsSettings, ServiceClient

log = logger("cityos.maps.upstream")
SERVICES = ("events", "spatiotemporal", "ingestion", "dispatch", "review", "identity")
# What Litestar answers for a path or method it has no route for (not "no such case").
NO_ROUTE = frozenset({"Not Found", "Method Not Allowed"})


class Unavailable(HTTPException):
    status_code = 503


class UpstreamError(HTTPException):
    """The other service's own 4xx, passed on with its reason."""


class Upstreams:
    def __init__(self, settings: MapsSettings, issuer: str, client: ServiceClient) -> None:
        self.urls = {
            "events": settings.events_url, "spatiotemporal": settings.spatiotemporal_url,
            "ingestion": settings.ingestion_url, "dispatch": settings.dispatch_url,
            "review": settings.review_url, "identity": settings.identity_url or issuer,
        }
        self.timeout = settings.upstream_timeout_s
        self.ttl = settings.cache_ttl_s
        self.service_auth = ClientCredentials(issuer, client.client_id, client.client_secret) \
            if client.client_id else None
        self._http: httpx.AsyncClient | None = None
        self._cache: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
            self._http = httpx.AsyncClient(timeout=self.timeout, limits=limits)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def call(self, service: str, method: str, path: str, *, token: str | None = None,
                   params: Mapping[str, Any] | None = None, json: Any = None,
                   data: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Any:
        """JSON answer of `service`; as the person with `token`, else as this service."""
        url = self.urls[service].rstrip("/") + path
        auth: httpx.Auth | None = None
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        else:
            auth = self.service_auth
        try:
            response = await self.http.request(method, url, params=params, json=json, data=data,
                                               headers=sent, auth=auth)
        except (httpx.TransportError, PermissionError) as exc:
            log.warning("upstream_unavailable", service=service, path=path, error=repr(exc))
            raise Unavailable(detail=f"{service} service unavailable",
                              extra={"service": service}) from exc
        if response.status_code in (404, 405) and _detail(response) in NO_ROUTE:
            # The service answers, but has no such route: an older or absent service.
            raise Unavailable(detail=f"{service} service does not offer {path}",
                              extra={"service": service})
        if response.status_code >= 400:
            raise UpstreamError(status_code=response.status_code, detail=_detail(response),
                                extra={"service": service})
        if not response.content:
            return None
        return response.json()

    async def shared(self, service: str, path: str, params: Mapping[str, Any] | None = None,
                     token: str | None = None, ttl: float | None = None,
                     body: Any = None) -> Any:
        """A cached GET (or POST of a query `body`) shared by every screen, made with this
        service's client when it has one, else with the asking person's token."""
        key = f"{service} {path} {sorted((params or {}).items())} {body!r}"
        hit = self._cache.get(key)
        limit = self.ttl if ttl is None else ttl
        if hit is not None and time.monotonic() - hit[0] < limit:
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch however many screens ask at once
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < limit:
                return hit[1]
            use = None if self.service_auth is not None else token
            value = await self.call(service, "GET" if body is None else "POST", path,
                                    params=params, token=use, json=body)
            self._cache[key] = (time.monotonic(), value)
            return value

    async def try_shared(self, service: str, path: str, params: Mapping[str, Any] | None = None,
                         token: str | None = None, ttl: float | None = None,
                         body: Any = None) -> Any:
        """`shared`, or None when the service cannot answer (the figure shows "—")."""
        if self.service_auth is None and token is None:
            return None
        try:
            return await self.shared(service, path, params, token, ttl, body)
        except HTTPException as exc:
            log.info("shared_fetch_failed", service=service, path=path, status=exc.status_code)
            return None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("error_description") or body)
    return str(body)
