"""Who may do what: bearer-token verification, declared route scopes, per-client rate limits.

Services declare, they do not re-implement:

    @post("/datasets", opt=scope("ingest:admin"))            # plain scope
    @post("/datasets/{dataset:str}/batches", opt=scope("ingest:write", per="dataset"))
    @get("/healthz", opt=PUBLIC)

`ingest:write` grants every dataset, `ingest:write:gps` only `gps`. A route with `per="*"`
admits any narrowed form and the handler calls `require_scope(request.user, name, resource)`
for the resource it finds in the body. A non-public route without a declaration is a
programming error: 500 at request time, and `undeclared_routes(app)` finds it in tests.

Tokens are JWTs from CITYOS_AUTH_ISSUER (the built-in identity service, or a city's own OIDC
provider found by `/.well-known/openid-configuration`). Claims a city IdP must provide:
`sub`, `aud` (CITYOS_AUTH_AUDIENCE), `exp`; `unit` (a unit id of units.json); roles in `roles`,
`groups` or Keycloak's `realm_access.roles`; scopes in `scope` (space-separated) or `scp` (list);
optionally `department` (else the unit id's prefix) and `kind` (`client`/`person`).
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from litestar import Litestar, Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    ImproperlyConfiguredException,
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.base import ASGIMiddleware
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.plugins import InitPlugin
from litestar.stores.base import Store
from litestar.types import ASGIApp, Receive, Scope, Send
from nats.js.api import DeliverPolicy

from cityos_contracts.identity import Principal, PrincipalKind, Revocation
from cityos_contracts.subjects import AUDIT_EVENTS, REVOCATIONS, STREAMS, Stream
from cityos_kit.config import Settings, from_env
from cityos_kit.telemetry import logger

log = logger("cityos.auth")

PUBLIC: Final[dict[str, Any]] = {"public": True}
# Served by create_app itself: probes and the metrics scrape are public (network policy guards
# them); the OpenAPI document is public so integrators can read what to ask for.
KIT_PUBLIC_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
STATE_KEY: Final = "cityos_security"
SECURITY_STREAMS: tuple[Stream, ...] = tuple(
    s for s in STREAMS if AUDIT_EVENTS in s.subjects or REVOCATIONS in s.subjects)


def scope(name: str, per: str | None = None) -> dict[str, Any]:
    """Route `opt` declaring the scope a route needs; `per` names the path parameter that
    narrows it (`ingest:write:<dataset>`), or "*" when the handler checks the resource."""
    return {"scope": name, "scope_per": per}


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthSettings:
    """CITYOS_AUTH_* settings: whom to trust, and the per-client limits."""

    issuer: str = "http://127.0.0.1:8009"
    audience: str = "cityos"
    leeway_s: float = 10.0
    jwks_cache_s: float = 600.0
    rate_limit_per_minute: int = 600
    audit_enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "AuthSettings":
        return from_env(cls, prefix="CITYOS_AUTH_", env=env)


# -- verification ----------------------------------------------------------------------------


class InvalidToken(Exception):
    """The bearer token cannot be trusted (bad signature, expired, revoked, wrong audience)."""


KINDS: Final[dict[str, PrincipalKind]] = {"client": "client", "person": "person",
                                          "service": "service"}
ALGORITHMS: Final = ["ES256", "RS256", "ES384", "RS384", "PS256", "EdDSA"]


def principal_from_claims(claims: Mapping[str, Any], issuer: str) -> Principal:
    """Map standard and CityOS claims (see the module doc) to a Principal."""
    scopes_claim = claims.get("scope", claims.get("scp", ""))
    scopes = scopes_claim.split() if isinstance(scopes_claim, str) else list(scopes_claim)
    roles = claims.get("roles") or claims.get("groups") or \
        (claims.get("realm_access") or {}).get("roles") or []
    unit = str(claims.get("unit") or "")
    if not unit:
        raise InvalidToken("token has no unit claim")
    department = str(claims.get("department") or unit.split("-", 1)[0])
    kind = claims.get("kind") or "person"
    if kind not in KINDS:
        raise InvalidToken(f"unknown principal kind {kind!r}")
    exp = claims.get("exp")
    return Principal(
        sub=str(claims["sub"]), kind=KINDS[kind], unit=unit, department=department,
        roles=tuple(str(r) for r in roles), scopes=tuple(str(s) for s in scopes), issuer=issuer,
        token_id=str(claims.get("jti") or ""), name=str(claims.get("name") or ""),
        expires_at=datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None,
    )


class TokenVerifier:
    """Verifies bearer JWTs by the issuer's published keys and knows what has been revoked.

    Keys come from the issuer's discovery document (or `jwks` given directly, for tests and
    for the issuer itself); an unknown `kid` triggers one refetch, so key rotation needs no
    restart. Revocations arrive on NATS (`listen`) or through `revoke`.
    """

    def __init__(self, issuer: str, audience: str = "cityos", *, jwks: Mapping[str, Any] | None
                 = None, leeway_s: float = 10.0, cache_s: float = 600.0,
                 http_client: httpx.AsyncClient | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.http_client = http_client  # default: a short-lived client per fetch
        self.audience = audience
        self.leeway_s = leeway_s
        self.cache_s = cache_s
        self._static = jwks is not None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.revoked_subjects: dict[str, datetime] = {}
        self.revoked_tokens: set[str] = set()
        # Tokens verified lately -> (claims, principal, monotonic time to verify again): a
        # client sends the same token on every request (a device gateway, many per second),
        # and the signature check is most of a small request's CPU.
        self._verified: dict[str, tuple[Mapping[str, Any], Principal, float]] = {}
        if jwks is not None:
            self.set_jwks(jwks)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> "TokenVerifier":
        return cls(settings.issuer, settings.audience, leeway_s=settings.leeway_s,
                   cache_s=settings.jwks_cache_s)

    def set_jwks(self, jwks: Mapping[str, Any]) -> None:
        self._keys = {k["kid"]: jwt.PyJWK(dict(k)) for k in jwks.get("keys", []) if "kid" in k}
        self._fetched_at = time.monotonic()
        self._verified = {}  # a key may have gone: check every signature again

    async def _fetch_jwks(self) -> None:
        if self.http_client is not None:
            await self._fetch_with(self.http_client)
            return
        async with httpx.AsyncClient(timeout=5) as client:
            await self._fetch_with(client)

    async def _fetch_with(self, client: httpx.AsyncClient) -> None:
        discovery = await client.get(f"{self.issuer}/.well-known/openid-configuration")
        discovery.raise_for_status()
        response = await client.get(discovery.json()["jwks_uri"])
        response.raise_for_status()
        self.set_jwks(response.json())

    async def _key(self, kid: str) -> jwt.PyJWK:
        stale = time.monotonic() - self._fetched_at > self.cache_s
        if kid in self._keys and (self._static or not stale):
            return self._keys[kid]
        if not self._static:
            async with self._lock:
                # Again, now: requests that queued behind a fetch need not each fetch again.
                if kid not in self._keys or \
                        time.monotonic() - self._fetched_at > self.cache_s:
                    try:
                        await self._fetch_jwks()
                    except (httpx.HTTPError, KeyError, ValueError) as exc:
                        log.warning("jwks_fetch_failed", issuer=self.issuer, error=repr(exc))
        if kid not in self._keys:
            raise InvalidToken(f"unknown signing key {kid!r}")
        return self._keys[kid]

    # How long a verified token is taken on trust (never past its expiry).
    VERIFIED_S = 60.0

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and time.monotonic() < known[2]:
            self._check_revoked(known[0])  # revocations apply at once, cached or not
            return known[1]
        principal, claims = await self._verify(token)
        if len(self._verified) >= 10_000:  # (bounded: many short-lived clients)
            self._verified.clear()
        self._verified[token] = (claims, principal, time.monotonic() + min(
            self.VERIFIED_S, float(claims["exp"]) - time.time()))
        return principal

    async def _verify(self, token: str) -> tuple[Principal, Mapping[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        key = await self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token, key.key, algorithms=ALGORITHMS, audience=self.audience,
                issuer=self.issuer, leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        self._check_revoked(claims)
        return principal_from_claims(claims, self.issuer), claims

    def _check_revoked(self, claims: Mapping[str, Any]) -> None:
        if claims.get("jti") and claims["jti"] in self.revoked_tokens:
            raise InvalidToken("token revoked")
        revoked_at = self.revoked_subjects.get(str(claims["sub"]))
        if revoked_at is not None and float(claims["iat"]) <= revoked_at.timestamp():
            raise InvalidToken("credentials revoked")

    def revoke(self, revocation: Revocation) -> None:
        if revocation.token_id:
            self.revoked_tokens.add(revocation.token_id)
        if revocation.sub:
            known = self.revoked_subjects.get(revocation.sub)
            if known is None or known < revocation.revoked_at:
                self.revoked_subjects[revocation.sub] = revocation.revoked_at

    async def listen(self, bus: Any) -> Any:
        """Apply every revocation still on the stream, then each new one, as it is published.

        `bus` is a connected `cityos_kit.bus.Bus`; returns the subscription (unsubscribe it)."""
        decoder = msgspec.json.Decoder(Revocation)

        async def on_message(msg: Any) -> None:
            try:
                self.revoke(decoder.decode(msg.data))
            except msgspec.DecodeError as exc:
                log.warning("bad_revocation", error=str(exc))

        # An ordered consumer: ephemeral, replays from the start, no state kept on the server.
        return await bus.js.subscribe(
            bus.subject(REVOCATIONS.pattern), cb=on_message, ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL, stream=bus.stream_name(
                next(s for s in SECURITY_STREAMS if REVOCATIONS in s.subjects)),
        )


# -- the middleware and the guard --------------------------------------------------------------


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
    return None


class AuthMiddleware(ASGIMiddleware):
    """Puts the verified Principal (or None) in `scope["user"]` and the reason it is missing
    in `scope["auth"]`; rejecting is the guard's job, so public routes still work."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        token = _bearer(scope)
        scope["user"] = None
        scope["auth"] = "no bearer token"
        if token is not None:
            verifier = security(scope["litestar_app"]).verifier
            try:
                scope["user"] = await verifier.verify(token)
                scope["auth"] = None
            except InvalidToken as exc:
                scope["auth"] = str(exc)
        await next_app(scope, receive, send)


def _docs_path(app: Litestar) -> str:
    return (app.openapi_config.path if app.openapi_config else None) or "/schema"


def _is_public(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> bool:
    path = connection.scope["path"]
    docs = _docs_path(connection.app)
    return bool(handler.opt.get("public")) or path in KIT_PUBLIC_PATHS or \
        path == docs or path.startswith(docs.rstrip("/") + "/") or \
        set(getattr(handler, "http_methods", ())) == {"OPTIONS"}


async def require_declared_scope(connection: ASGIConnection[Any, Any, Any, Any],
                                 handler: BaseRouteHandler) -> None:
    """The app-wide guard: each route's declared scope, or its declared publicness. Async
    though it never waits: Litestar runs a sync guard in a worker thread, on every request."""
    if _is_public(connection, handler):
        return
    needed = handler.opt.get("scope")
    if not needed:
        raise ImproperlyConfiguredException(
            f"route {connection.scope['path']} declares no scope: add opt=scope(...) or PUBLIC")
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        reason = connection.scope.get("auth") or "no bearer token"
        raise NotAuthorizedException(
            detail=f"authentication required: {reason}",
            headers={"WWW-Authenticate": f'Bearer realm="cityos", error="invalid_token", '
                                         f'error_description="{reason}"'},
        )
    per = handler.opt.get("scope_per")
    if per == "*":
        allowed = principal.has_scope(needed) or principal.has_narrowed(needed)
    elif per:
        resource = connection.path_params.get(per) or connection.query_params.get(per)
        allowed = principal.has_scope(needed, str(resource) if resource else None)
    else:
        allowed = principal.has_scope(needed)
    if not allowed:
        raise PermissionDeniedException(
            detail=f"token lacks scope {needed}" + (f" for this {per}" if per and per != "*"
                                                    else ""),
            headers={"WWW-Authenticate": f'Bearer realm="cityos", error="insufficient_scope", '
                                         f'scope="{needed}"'},
        )


def require_scope(principal: Principal, name: str, resource: str | None = None) -> None:
    """For a handler that finds the resource in the body (routes declared with per="*")."""
    if not principal.has_scope(name, resource):
        raise PermissionDeniedException(detail=f"token lacks scope {name}:{resource}")


def require_unit(principal: Principal, unit_id: str, unit_department: str | None = None) -> None:
    """403 unless the caller may see this unit's data."""
    if not principal.can_see_unit(unit_id, unit_department):
        raise PermissionDeniedException(detail=f"unit {principal.unit} may not see unit {unit_id}")


def undeclared_routes(app: Litestar) -> list[str]:
    """`METHOD path` of every route that declares neither a scope nor PUBLIC (must be empty)."""
    docs = _docs_path(app)
    missing: list[str] = []
    for route in app.routes:
        if route.path in KIT_PUBLIC_PATHS or route.path == docs or \
                route.path.startswith(docs.rstrip("/") + "/"):
            continue
        for handler in getattr(route, "route_handlers", []):
            methods = set(getattr(handler, "http_methods", ()))
            if methods == {"OPTIONS"} or handler.opt.get("public") or handler.opt.get("scope"):
                continue
            missing.extend(f"{m} {route.path}" for m in sorted(methods))
    return missing


def current_principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException(detail="authentication required")
    return user


# -- rate limits -------------------------------------------------------------------------------


def client_identifier(request: Request[Any, Any, Any]) -> str:
    """Per client (token subject) when authenticated, else per address."""
    user = request.scope.get("user")
    if isinstance(user, Principal):
        return f"sub:{user.sub}"
    client = request.client
    return f"ip:{client.host if client else 'unknown'}"


@dataclass
class _Window(CacheObject):
    """A client's requests in the current window: their count, not each one's time."""

    __slots__ = ("count",)
    count: int


class _RateLimitMiddleware(RateLimitMiddleware):
    """Litestar's limiter (a fixed window per client), with Retry-After and a reason on the 429.
    It counts a window's requests; Litestar keeps every request's time in a list that is
    decoded and encoded again on each request (a fifth of dispatch's CPU for a gateway
    reporting 100 positions a second)."""

    async def handle_429(self, cache_object: CacheObject) -> None:
        retry = max(1, cache_object.reset - int(time.time()))
        raise TooManyRequestsException(
            detail=f"rate limit of {self.max_requests} requests per {self.unit} exceeded",
            headers={"Retry-After": str(retry), **self.create_response_headers(cache_object)},
        )

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        count = cache_object.count if isinstance(cache_object, _Window) else \
            len(cache_object.history)
        return {
            self.config.rate_limit_policy_header_key:
                f"{self.max_requests}; w={DURATION_VALUES[self.unit]}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(0, self.max_requests - count)),
            self.config.rate_limit_reset_header_key: str(cache_object.reset - int(time.time())),
        }

    async def _window(self, key: str, store: Store) -> _Window:
        now = int(time.time())
        cached = await store.get(key)
        if cached:
            with contextlib.suppress(msgspec.DecodeError, ValueError):
                count, reset = msgspec.json.decode(cached, type=tuple[int, int])
                if reset > now:
                    return _Window(history=[], reset=reset, count=count)
        return _Window(history=[], reset=now + DURATION_VALUES[self.unit], count=0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope)
        if await self.should_check_request(request=request):
            store = self.config.get_store_from_app(app)
            key = self.cache_key_from_request(request)
            async with self._lock:
                window = await self._window(key, store)
                if window.count >= self.max_requests:
                    await self.handle_429(window)
                window.count += 1
                await store.set(key, msgspec.json.encode((window.count, window.reset)),
                                expires_in=DURATION_VALUES[self.unit])
            send = self.create_send_wrapper(send=send, cache_object=window)
        await self.app(scope, receive, send)


def rate_limit_config(per_minute: int) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", per_minute), identifier_for_request=client_identifier,
        exclude=sorted(KIT_PUBLIC_PATHS), exclude_opt_key="no_rate_limit",
        middleware_class=_RateLimitMiddleware,
    )


# -- wiring ------------------------------------------------------------------------------------


@dataclass
class Security:
    """What one app's security needs at run time: its verifier, its audit log, its NATS bus."""

    verifier: TokenVerifier
    audit: Any = None  # cityos_kit.audit.AuditLog once started
    bus: Any = None
    subscription: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def security(app: Litestar) -> Security:
    value = app.state.get(STATE_KEY)
    if not isinstance(value, Security):
        raise ImproperlyConfiguredException("AuthPlugin is not installed on this app")
    return value


class AuthPlugin(InitPlugin):
    """Installs, on one app: the auth middleware, the declared-scope guard, per-client rate
    limits, the automatic audit of state-changing calls, and the revocation listener.

    `verifier` defaults to one for CITYOS_AUTH_ISSUER; the identity service passes its own
    (it verifies with its keys, no HTTP). A second AuthPlugin on the same app only replaces the
    verifier, so a service may pass its own even when create_app installs the default one.
    """

    def __init__(self, settings: Settings, *, verifier: TokenVerifier | None = None,
                 auth_settings: AuthSettings | None = None,
                 rate_limit_per_minute: int | None = None) -> None:
        self.settings = settings
        self.auth_settings = auth_settings or AuthSettings.from_env()
        self.verifier = verifier
        self.per_minute = rate_limit_per_minute or self.auth_settings.rate_limit_per_minute

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        from cityos_kit.audit import AuditLog, AuditMiddleware

        existing = app_config.state.get(STATE_KEY)
        if isinstance(existing, Security):
            if self.verifier is not None:
                existing.verifier = self.verifier
            return app_config
        sec = Security(self.verifier or TokenVerifier.from_settings(self.auth_settings))
        app_config.state[STATE_KEY] = sec
        # Order matters: identify the caller, then limit per caller, then audit what it does.
        app_config.middleware.extend([
            AuthMiddleware(), rate_limit_config(self.per_minute).middleware, AuditMiddleware()])
        app_config.guards.append(require_declared_scope)
        settings, audit_on = self.settings, self.auth_settings.audit_enabled

        async def start(app: Litestar) -> None:
            from cityos_kit.bus import Bus

            sec.bus = Bus(settings)
            await sec.bus.connect()
            await sec.bus.ensure_streams(SECURITY_STREAMS)
            sec.subscription = await sec.verifier.listen(sec.bus)
            sec.audit = AuditLog(sec.bus, settings.service) if audit_on else None

        async def stop(app: Litestar) -> None:
            if sec.subscription is not None:
                with contextlib.suppress(Exception):
                    await sec.subscription.unsubscribe()
            if sec.bus is not None:
                await sec.bus.close()

        app_config.on_startup.append(start)
        app_config.on_shutdown.append(stop)
        return app_config


# -- a local issuer for tests ---------------------------------------------------------------------


class LocalIssuer:
    """Mints tokens in-process with a fresh key, and a verifier that trusts them: for tests of
    any service (`AuthPlugin(settings, verifier=issuer.verifier())`, `issuer.token(...)`)."""

    def __init__(self, issuer: str = "http://issuer.test", audience: str = "cityos") -> None:
        self.issuer, self.audience = issuer, audience
        self.kid = uuid.uuid4().hex[:12]
        self._key = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.issuer, self.audience, jwks=self.jwks)

    def token(self, *, sub: str = "tester", unit: str = "CMD", scopes: tuple[str, ...] = (),
              roles: tuple[str, ...] = (), kind: str = "client", lifetime_s: int = 600,
              **extra: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": sub, "iat": now,
                  "exp": now + lifetime_s, "jti": uuid.uuid4().hex, "unit": unit,
                  "roles": list(roles), "scope": " ".join(scopes), "kind": kind, **extra}
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
