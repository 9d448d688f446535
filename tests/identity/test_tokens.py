"""Token issuance, expiry, secret rotation, key rotation and revocation, against the real stack."""

import asyncio
import time
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from cityos_identity.service import Identity
from cityos_kit.auth import InvalidToken, TokenVerifier
from cityos_kit.bus import Bus
from cityos_kit.config import Settings

from .conftest import ISSUER, basic, bearer, eventually

Client = AsyncTestClient[Litestar]


async def new_client(client: Client, admin_token: str, scopes: list[str],
                     unit: str = "CGJ-329901") -> dict[str, Any]:
    response = await client.post("/clients", headers=bearer(admin_token), json={
        "name": "CGJ Beicheng case system", "unit": unit, "scopes": scopes})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def client_token(client: Client, client_id: str, secret: str, **form: str) -> Any:
    return await client.post("/oauth/token", headers=basic(client_id, secret),
                             data={"grant_type": "client_credentials", **form})


async def test_discovery_and_keys(client: Client) -> None:
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == ISSUER
    assert discovery["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert keys and all(k["kty"] == "EC" and "d" not in k and k["kid"] for k in keys)


async def test_client_credentials_token(client: Client, admin_token: str,
                                        identity: Identity) -> None:
    creds = await new_client(client, admin_token, ["cases:read", "ingest:write:gps"])
    response = await client_token(client, creds["client_id"], creds["client_secret"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["scope"] == "cases:read ingest:write:gps"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == creds["client_id"] and claims["aud"] == "cityos"
    assert claims["iss"] == ISSUER and claims["kind"] == "client"
    assert claims["unit"] == "CGJ-329901" and claims["department"] == "CGJ"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]
    principal = await identity.verifier.verify(body["access_token"])
    assert principal.has_scope("ingest:write", "gps")
    assert not principal.has_scope("ingest:write", "buses")

    # Form credentials work too; a narrower scope may be asked for, a wider one not.
    narrow = await client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"], "scope": "cases:read"})
    assert narrow.status_code == 200 and narrow.json()["scope"] == "cases:read"
    wide = await client_token(client, creds["client_id"], creds["client_secret"],
                              scope="cases:act")
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"

    # The list shows the client, never a secret.
    listed = (await client.get("/clients", headers=bearer(admin_token))).json()
    mine = [c for c in listed if c["client_id"] == creds["client_id"]]
    assert mine and "client_secret" not in mine[0] and "secret_hash" not in mine[0]


async def test_oauth_errors(client: Client, admin_token: str) -> None:
    creds = await new_client(client, admin_token, ["cases:read"])
    bad = await client_token(client, creds["client_id"], "wrong")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    assert bad.headers["www-authenticate"].startswith("Basic")
    unknown = await client_token(client, "nobody", "x")
    assert unknown.status_code == 401
    person = await client.post("/oauth/token", data={
        "grant_type": "password", "username": "admin", "password": "not the password"})
    assert person.status_code == 400 and person.json()["error"] == "invalid_grant"
    grant = await client.post("/oauth/token", data={"grant_type": "authorization_code"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    missing = await client.post("/oauth/token", data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


async def test_person_token(client: Client, admin_token: str, identity: Identity) -> None:
    created = await client.post("/people", headers=bearer(admin_token), json={
        "username": "li.field", "unit": "CGJ-329901", "roles": ["field_staff"]})
    assert created.status_code == 201, created.text
    password = created.json()["password"]
    assert password and created.json()["scopes"] == ["cases:act", "cases:read", "cases:report",
                                                     "staff:report"]
    again = await client.post("/people", headers=bearer(admin_token), json={
        "username": "li.field", "unit": "CGJ-329901", "roles": ["field_staff"]})
    assert again.status_code == 409
    response = await client.post("/oauth/token", data={
        "grant_type": "password", "username": "li.field", "password": password})
    assert response.status_code == 200, response.text
    principal = await identity.verifier.verify(response.json()["access_token"])
    assert principal.kind == "person" and principal.roles == ("field_staff",)
    assert principal.unit == "CGJ-329901" and principal.can_see_unit("CGJ-329901")
    assert not principal.can_see_unit("CGJ-329902")


async def test_admin_api_needs_admin_scope(client: Client, admin_token: str) -> None:
    creds = await new_client(client, admin_token, ["cases:read"])
    token = (await client_token(client, creds["client_id"], creds["client_secret"])).json()
    assert (await client.get("/clients")).status_code == 401
    denied = await client.get("/clients", headers=bearer(token["access_token"]))
    assert denied.status_code == 403 and "identity:admin" in denied.json()["detail"]
    unknown_unit = await client.post("/clients", headers=bearer(admin_token), json={
        "name": "x", "unit": "NOPE", "scopes": ["cases:read"]})
    assert unknown_unit.status_code == 422


async def test_expired_token_is_rejected(client: Client, identity: Identity) -> None:
    token, _ = identity.issue(sub="short", kind="client", unit="CMD", department="CMD",
                              roles_=[], scopes=["identity:admin"], lifetime_s=1)
    assert (await client.get("/clients", headers=bearer(token))).status_code == 200
    await asyncio.sleep(2.1)
    expired = await client.get("/clients", headers=bearer(token))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert expired.headers["www-authenticate"].startswith("Bearer")


async def test_secret_rotation_overlap(client: Client, admin_token: str) -> None:
    creds = await new_client(client, admin_token, ["cases:read"])
    old = creds["client_secret"]
    rotated = await client.post(f"/clients/{creds['client_id']}/rotate",
                                headers=bearer(admin_token), json={"overlap_hours": 0.0005})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["client_secret"]
    assert new != old and rotated.json()["previous_secret_valid_until"]
    assert (await client_token(client, creds["client_id"], old)).status_code == 200
    assert (await client_token(client, creds["client_id"], new)).status_code == 200
    await asyncio.sleep(2.0)  # the overlap (1.8 s) is over
    assert (await client_token(client, creds["client_id"], old)).status_code == 401
    assert (await client_token(client, creds["client_id"], new)).status_code == 200
    missing = await client.post("/clients/nope/rotate", headers=bearer(admin_token), json={})
    assert missing.status_code == 404


async def test_revocation_reaches_other_services(client: Client, admin_token: str,
                                                 make_settings: Any) -> None:
    """Another service's verifier (own NATS connection) rejects a revoked client's unexpired
    token within a second, without restarting."""
    jwks = (await client.get("/.well-known/jwks.json")).json()
    other = TokenVerifier(ISSUER, jwks=jwks)
    settings: Settings = make_settings("other-service")
    bus = Bus(settings)
    await bus.connect()
    try:
        subscription = await other.listen(bus)
        creds = await new_client(client, admin_token, ["cases:read"])
        token = (await client_token(client, creds["client_id"],
                                    creds["client_secret"])).json()["access_token"]
        assert (await other.verify(token)).sub == creds["client_id"]
        revoked = await client.post(f"/clients/{creds['client_id']}/revoke",
                                    headers=bearer(admin_token))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        started = time.monotonic()

        async def rejected() -> bool:
            try:
                await other.verify(token)
            except InvalidToken as exc:
                return "revoked" in str(exc)
            return False

        assert await eventually(rejected, timeout=1.0)
        assert time.monotonic() - started < 1.0
        # The identity service itself rejects it, and issues no new token.
        assert (await client.get("/clients", headers=bearer(token))).status_code == 401
        again = await client_token(client, creds["client_id"], creds["client_secret"])
        assert again.status_code == 401
        # A verifier that starts later learns the revocation from the stream.
        late = TokenVerifier(ISSUER, jwks=jwks)
        late_sub = await late.listen(bus)
        assert await eventually(rejected_by(late, token), timeout=2.0)
        await late_sub.unsubscribe()
        await subscription.unsubscribe()
    finally:
        await bus.close()


def rejected_by(verifier: TokenVerifier, token: str) -> Any:
    async def check() -> bool:
        try:
            await verifier.verify(token)
        except InvalidToken:
            return True
        return False
    return check


async def test_key_rotation_keeps_old_tokens_valid(client: Client, admin_token: str,
                                                   identity: Identity) -> None:
    before = jwt.get_unverified_header(admin_token)["kid"]
    rotated = await client.post("/keys/rotate", headers=bearer(admin_token))
    assert rotated.status_code == 200 and rotated.json()["kid"] != before
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert {before, rotated.json()["kid"]} <= {k["kid"] for k in keys}
    assert (await client.get("/clients", headers=bearer(admin_token))).status_code == 200
    token, _ = identity.issue(sub="x", kind="client", unit="CMD", department="CMD", roles_=[],
                              scopes=["identity:admin"])
    assert jwt.get_unverified_header(token)["kid"] == rotated.json()["kid"]
    assert (await client.get("/clients", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/.well-known/jwks.json", "/docs/openapi.json"])
async def test_public_routes(client: Client, path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def test_verifier_discovers_keys_over_http(client: Client, admin_token: str,
                                                 auditor_token: str) -> None:
    """A service pointed at the issuer URL finds the JWKS by discovery, and refetches when a
    token is signed by a key it has not seen (key rotation without restart)."""
    verifier = TokenVerifier(ISSUER, http_client=client)
    assert (await verifier.verify(admin_token)).sub == "admin"
    rotated = await client.post("/keys/rotate", headers=bearer(admin_token))
    new_kid = rotated.json()["kid"]
    token = (await client.post("/oauth/token", data={
        "grant_type": "password", "username": "auditor1",
        "password": "correct horse battery staple"})).json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert (await verifier.verify(token)).roles == ("auditor",)
    wrong_audience = TokenVerifier(ISSUER, audience="another-city", http_client=client)
    with pytest.raises(InvalidToken, match=r"(?i)audience"):
        await wrong_audience.verify(token)
