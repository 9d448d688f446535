"""HTTP API: the OAuth2 token endpoint, discovery and keys, administration and the audit log."""

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, TypeAlias
from urllib.parse import unquote_plus

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Dependency, Provide
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException
from litestar.params import Body, JSONBody, Parameter

from cityos_contracts.identity import (
    AuditPage,
    ClientCredentials,
    ClientInfo,
    ClientRegistration,
    OAuthError,
    PasswordChange,
    PersonInfo,
    SecretRotation,
    TokenRequest,
    TokenResponse,
    TokenRevocation,
    UserCreated,
    UserRegistration,
)
from cityos_identity.service import Identity, IdentityError
from cityos_kit.audit import client_ip
from cityos_kit.auth import PUBLIC, current_principal, scope, security

ADMIN = scope("identity:admin")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
OAUTH_STATUS = {"invalid_client": 401}
# Injected by name (Litestar's NamedDependency, spelled out so type checkers keep the type).
IdentityDep: TypeAlias = Annotated[Identity, Dependency(kind="named")]


def provide_identity(state: State) -> Identity:
    identity: IdentityDep = state.identity
    return identity


def _http(exc: IdentityError) -> HTTPException:
    return HTTPException(status_code=int(exc.code), detail=exc.description)


def _oauth_error(error: str, description: str) -> Response[Any]:
    headers = dict(NO_STORE)
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="cityos"'
    return Response(OAuthError(error=error, error_description=description),  # type: ignore[arg-type]
                    status_code=OAUTH_STATUS.get(error, 400), headers=headers)


def _basic_credentials(request: Request[Any, Any, Any]) -> tuple[str, str] | None:
    kind, _, value = request.headers.get("authorization", "").partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if sep else None


@post("/oauth/token", opt={**PUBLIC, "audit": False}, status_code=200,
      summary="OAuth 2.0 token endpoint (client_credentials, password and refresh_token "
              "grants)")
async def token(
    request: Request[Any, Any, Any], identity: IdentityDep,
    data: Annotated[TokenRequest, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    audit = security(request.app).audit
    if data.grant_type == "client_credentials":
        creds = _basic_credentials(request) or (data.client_id, data.client_secret)
        if not creds[0] or not creds[1]:
            return _oauth_error("invalid_client", "client_id and client_secret are required "
                                "(HTTP Basic or form fields)")
        who, kind = str(creds[0]), "client"
        attempt = identity.client_token(str(creds[0]), str(creds[1]), data.scope)
    elif data.grant_type == "password":
        if not data.username or not data.password:
            return _oauth_error("invalid_request", "username and password are required")
        who, kind = data.username, "person"
        attempt = identity.person_token(data.username, data.password, data.scope)
    elif data.grant_type == "refresh_token":
        if not data.refresh_token:
            return _oauth_error("invalid_request", "refresh_token is required")
        who, kind = "refresh_token", "person"
        attempt = identity.refresh_token(data.refresh_token, data.scope)
    elif not data.grant_type:
        return _oauth_error("invalid_request", "grant_type is required")
    else:
        return _oauth_error("unsupported_grant_type",
                            f"grant_type {data.grant_type!r}: use client_credentials, password "
                            "or refresh_token")
    try:
        grant = await attempt
    except IdentityError as exc:
        if audit is not None:
            await audit.record(actor=who, action=f"token {data.grant_type}", resource=who,
                               outcome="denied", status_code=OAUTH_STATUS.get(str(exc.code), 400),
                               ip=client_ip(request.scope), detail=str(exc.code))
        return _oauth_error(str(exc.code), exc.description)
    who = grant.subject or who
    if audit is not None:
        await audit.record(actor=who, action=f"token {data.grant_type}", resource=who,
                           outcome="success", status_code=200, ip=client_ip(request.scope),
                           detail=f"kind={kind} scope={' '.join(grant.scopes)}")
    return Response(TokenResponse(
        access_token=grant.access_token, expires_in=grant.expires_in,
        scope=" ".join(grant.scopes), token_type="Bearer", refresh_token=grant.refresh_token,
        refresh_expires_in=grant.refresh_expires_in), headers=NO_STORE)


@post("/oauth/revoke", opt={**PUBLIC, "audit": False}, status_code=200,
      summary="OAuth 2.0 token revocation (RFC 7009): sign out")
async def revoke_token(
    request: Request[Any, Any, Any], identity: IdentityDep,
    data: Annotated[TokenRevocation, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """A refresh token ends its whole sign-in, and the access tokens issued from it; an access
    token is revoked alone. 200 whether or not the token was known (RFC 7009 §2.2)."""
    if not data.token:
        return _oauth_error("invalid_request", "token is required")
    what = await identity.sign_out(data.token)
    audit = security(request.app).audit
    if audit is not None and what != "unknown":
        await audit.record(actor="token holder", action="sign out", resource=what,
                           outcome="success", status_code=200, ip=client_ip(request.scope))
    return Response(None, headers=NO_STORE)


@get("/.well-known/openid-configuration", opt=PUBLIC, summary="OIDC discovery document")
async def discovery(identity: IdentityDep) -> dict[str, Any]:
    issuer = identity.auth.issuer
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "unit", "department",
                             "roles", "scope", "kind", "name"],
    }


@get("/.well-known/jwks.json", opt=PUBLIC, summary="Public signing keys (JWKS)")
async def jwks(identity: IdentityDep) -> dict[str, Any]:
    return identity.keys.jwks()


@post("/clients", opt=ADMIN, status_code=201,
      summary="Register a machine client (the secret is shown only in this answer)")
async def create_client(data: JSONBody[ClientRegistration], identity: IdentityDep) -> ClientCredentials:
    try:
        return await identity.create_client(data)
    except IdentityError as exc:
        raise _http(exc) from exc


@get("/clients", opt=ADMIN, summary="List clients (never their secrets)")
async def list_clients(identity: IdentityDep) -> list[ClientInfo]:
    return await identity.list_clients()


@post("/clients/{client_id:str}/rotate", opt=ADMIN, status_code=200,
      summary="New secret; the previous one keeps working for the overlap")
async def rotate_secret(client_id: str, identity: IdentityDep,
                        data: JSONBody[SecretRotation | None] = None) -> ClientCredentials:
    hours = data.overlap_hours if data is not None else identity.config.secret_overlap_hours
    try:
        return await identity.rotate_secret(client_id, hours)
    except IdentityError as exc:
        raise _http(exc) from exc


@post("/clients/{client_id:str}/revoke", opt=ADMIN, status_code=200,
      summary="Revoke a client: its tokens are rejected by every service at once")
async def revoke_client(client_id: str, identity: IdentityDep) -> ClientInfo:
    try:
        return await identity.revoke_client(client_id)
    except IdentityError as exc:
        raise _http(exc) from exc


@post("/people", opt=ADMIN, status_code=201, summary="Register a person with roles")
async def create_person(data: JSONBody[UserRegistration], identity: IdentityDep) -> UserCreated:
    try:
        return await identity.create_person(data)
    except IdentityError as exc:
        raise _http(exc) from exc


@post("/people/me/password", opt=PUBLIC, status_code=200,
      summary="Change my password: every session of mine ends (sign in again)")
async def change_password(data: JSONBody[PasswordChange], request: Request[Any, Any, Any],
                          identity: IdentityDep) -> dict[str, str]:
    principal = current_principal(request)  # any signed-in person; 401 without a token
    if principal.kind != "person":
        raise HTTPException(status_code=403, detail="only people have passwords")
    try:
        await identity.change_password(principal.sub, data.current_password, data.new_password)
    except IdentityError as exc:
        raise _http(exc) from exc
    return {"username": principal.sub, "sessions": "ended"}


@post("/people/{username:str}/disable", opt=ADMIN, status_code=200,
      summary="Disable a person: no more sign-ins, every token of theirs rejected at once")
async def disable_person(username: str, identity: IdentityDep) -> PersonInfo:
    try:
        return await identity.disable_person(username)
    except IdentityError as exc:
        raise _http(exc) from exc


@post("/keys/rotate", opt=ADMIN, status_code=200, summary="Start signing with a new key")
async def rotate_key(identity: IdentityDep) -> dict[str, str]:
    kid = await identity.keys.rotate()
    identity.verifier.set_jwks(identity.keys.jwks())
    return {"kid": kid}


@get("/audit", opt=scope("audit:read"), summary="Query the audit log, newest first")
async def audit_log(
    identity: IdentityDep,
    actor: str | None = None,
    unit: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: Annotated[int | None, Parameter(ge=1, le=2**62)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
) -> AuditPage:
    items, next_before = await identity.query_audit(
        actor=actor, unit=unit, action=action, since=since, until=until,
        before_seq=before_seq, limit=limit)
    return AuditPage(items=items, next_before_seq=next_before)


ROUTES = [token, revoke_token, discovery, jwks, create_client, list_clients, rotate_secret,
          revoke_client, create_person, change_password, disable_person, rotate_key, audit_log]
DEPENDENCIES = {"identity": Provide(provide_identity, sync_to_thread=False)}
