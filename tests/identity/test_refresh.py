"""Refresh tokens of the password grant: rotation, reuse detection, sign-out, password change
and disabling a person, against the real stack."""

import asyncio
from typing import Any

import jwt
from litestar import Litestar
from litestar.testing import AsyncTestClient

from cityos_identity import refresh
from cityos_identity.service import Identity

from .conftest import bearer

Client = AsyncTestClient[Litestar]
PASSWORD = "a long enough password 1"


async def person(client: Client, admin_token: str, username: str,
                 roles: list[str] | None = None) -> None:
    created = await client.post("/people", headers=bearer(admin_token), json={
        "username": username, "unit": "CGJ-329901", "roles": roles or ["unit_staff"],
        "password": PASSWORD})
    assert created.status_code == 201, created.text


async def sign_in(client: Client, username: str, password: str = PASSWORD,
                  **form: str) -> Any:
    return await client.post("/oauth/token", data={
        "grant_type": "password", "username": username, "password": password, **form})


async def renew(client: Client, token: str, **form: str) -> Any:
    return await client.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token, **form})


async def accepted(client: Client, access_token: str) -> bool:
    """Whether the service still takes the access token (any route needing a token)."""
    response = await client.get("/clients", headers=bearer(access_token))
    assert response.status_code in (401, 403), response.text
    return response.status_code == 403  # authenticated, only not an administrator


async def test_password_grant_answers_a_refresh_token_and_renewal_rotates_it(
        client: Client, admin_token: str, db_identity: Identity) -> None:
    await person(client, admin_token, "r.rotate")
    first = await sign_in(client, "r.rotate", scope="cases:read stquery:read")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["refresh_token"] and body["refresh_expires_in"] == 8 * 3600
    assert body["token_type"] == "Bearer" and body["scope"] == "cases:read stquery:read"
    # Stored only as a hash.
    stored = await db_identity.pool.fetch(
        "SELECT token_hash FROM refresh_tokens WHERE username = 'r.rotate'")
    assert [r["token_hash"] for r in stored] == [refresh.digest(body["refresh_token"])]

    second = await renew(client, body["refresh_token"])
    assert second.status_code == 200, second.text
    renewed = second.json()
    assert renewed["refresh_token"] != body["refresh_token"]
    assert renewed["access_token"] != body["access_token"]
    assert renewed["scope"] == "cases:read stquery:read"
    claims = jwt.decode(renewed["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "r.rotate" and claims["kind"] == "person"
    assert await accepted(client, renewed["access_token"])
    # A refresh may narrow the scopes, never widen them beyond the sign-in's.
    narrow = await renew(client, renewed["refresh_token"], scope="cases:read")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "cases:read"
    wide = await renew(client, narrow.json()["refresh_token"], scope="cases:act")
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"
    # The refused request did not use the token up.
    again = await renew(client, narrow.json()["refresh_token"])
    assert again.status_code == 200, again.text

    # Client credentials get no refresh token (the field is absent, not null).
    creds = (await client.post("/clients", headers=bearer(admin_token), json={
        "name": "x", "unit": "CMD", "scopes": ["cases:read"]})).json()
    machine = await client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": creds["client_id"],
        "client_secret": creds["client_secret"]})
    assert "refresh_token" not in machine.json() and machine.json()["token_type"] == "Bearer"


async def test_reuse_of_a_rotated_token_revokes_the_whole_sign_in(
        client: Client, admin_token: str) -> None:
    await person(client, admin_token, "r.reuse")
    stolen = (await sign_in(client, "r.reuse")).json()
    legit = (await renew(client, stolen["refresh_token"])).json()
    assert await accepted(client, legit["access_token"])
    # The copied (already rotated) token is presented again: refused, and the family dies.
    replay = await renew(client, stolen["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert "already used" in replay.json()["error_description"]
    after = await renew(client, legit["refresh_token"])
    assert after.status_code == 400 and "revoked" in after.json()["error_description"]
    # The access token issued with the newest refresh token is cut off too.
    assert not await accepted(client, legit["access_token"])
    # Another sign-in of the same person is not affected.
    other = (await sign_in(client, "r.reuse")).json()
    assert (await renew(client, other["refresh_token"])).status_code == 200


async def test_sign_out_revokes_the_refresh_token_and_its_access_token(
        client: Client, admin_token: str) -> None:
    await person(client, admin_token, "r.logout")
    session = (await sign_in(client, "r.logout")).json()
    assert await accepted(client, session["access_token"])
    out = await client.post("/oauth/revoke", data={"token": session["refresh_token"],
                                                   "token_type_hint": "refresh_token"})
    assert out.status_code == 200 and out.headers["cache-control"] == "no-store"
    refused = await renew(client, session["refresh_token"])
    assert refused.status_code == 400 and "signed out" in refused.json()["error_description"]
    assert not await accepted(client, session["access_token"])
    # Unknown tokens are answered the same (nothing to learn); an empty one is a bad request.
    assert (await client.post("/oauth/revoke", data={"token": "nope"})).status_code == 200
    assert (await client.post("/oauth/revoke", data={})).json()["error"] == "invalid_request"
    # An access token alone can be revoked as well.
    other = (await sign_in(client, "r.logout")).json()
    assert (await client.post("/oauth/revoke",
                              data={"token": other["access_token"]})).status_code == 200
    assert not await accepted(client, other["access_token"])
    assert (await renew(client, other["refresh_token"])).status_code == 200


async def test_password_change_ends_every_session(client: Client, admin_token: str) -> None:
    await person(client, admin_token, "r.password")
    one, two = [(await sign_in(client, "r.password")).json() for _ in range(2)]
    wrong = await client.post("/people/me/password", headers=bearer(one["access_token"]),
                              json={"current_password": "not it", "new_password": "x" * 12})
    assert wrong.status_code == 403
    short = await client.post("/people/me/password", headers=bearer(one["access_token"]),
                              json={"current_password": PASSWORD, "new_password": "short"})
    assert short.status_code == 400
    assert (await client.post("/people/me/password", json={
        "current_password": PASSWORD, "new_password": "y" * 12})).status_code == 401
    changed = await client.post("/people/me/password", headers=bearer(one["access_token"]),
                                json={"current_password": PASSWORD,
                                      "new_password": "the new password 2"})
    assert changed.status_code == 200, changed.text
    for session in (one, two):
        refused = await renew(client, session["refresh_token"])
        assert refused.status_code == 400 and "password changed" in refused.text
        assert not await accepted(client, session["access_token"])
    assert (await sign_in(client, "r.password")).status_code == 400
    await asyncio.sleep(1.1)  # tokens are revoked by issue time, in whole seconds
    fresh = await sign_in(client, "r.password", "the new password 2")
    assert fresh.status_code == 200 and await accepted(client, fresh.json()["access_token"])


async def test_disabling_a_person_ends_their_sessions(client: Client, admin_token: str) -> None:
    await person(client, admin_token, "r.disable")
    session = (await sign_in(client, "r.disable")).json()
    disabled = await client.post("/people/r.disable/disable", headers=bearer(admin_token))
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    assert "password_hash" not in disabled.json()
    refused = await renew(client, session["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert not await accepted(client, session["access_token"])
    assert (await sign_in(client, "r.disable")).status_code == 400
    missing = await client.post("/people/nobody/disable", headers=bearer(admin_token))
    assert missing.status_code == 404


async def test_expired_refresh_token_is_refused(client: Client, admin_token: str,
                                                db_identity: Identity) -> None:
    await person(client, admin_token, "r.expire")
    session = (await sign_in(client, "r.expire")).json()
    await db_identity.pool.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"
        " WHERE token_hash = $1", refresh.digest(session["refresh_token"]))
    refused = await renew(client, session["refresh_token"])
    assert refused.status_code == 400 and "expired" in refused.json()["error_description"]
    missing = await client.post("/oauth/token", data={"grant_type": "refresh_token"})
    assert missing.json()["error"] == "invalid_request"
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert "refresh_token" in discovery["grant_types_supported"]
    assert discovery["revocation_endpoint"].endswith("/oauth/revoke")
