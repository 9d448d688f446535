"""Refresh tokens of the password grant (RFC 6749 §6, with the rotation and reuse detection of
the OAuth 2.0 Security BCP, RFC 9700 §4.14).

A sign-in starts a family. Each refresh token is single use: redeeming it marks it used and
issues the next one of the family. A used token presented again was copied (the legitimate
holder already has its successor), so the whole family is revoked, and with it the access
tokens issued from it. Signing out, changing the password and disabling the person revoke
their families too. Only a SHA-256 of each token is stored.
"""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


def digest(token: str) -> str:
    # The tokens are 256-bit random strings: a fast hash is enough, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int


@dataclass(frozen=True)
class Redeemable:
    """A refresh token that may be exchanged now, with its person's current standing."""

    token_hash: str
    family_id: str
    username: str
    scopes: list[str]
    family_expires_at: datetime


class Refused(Exception):
    """The token cannot be redeemed; `revoked_jtis` are access tokens to cut off now (reuse)."""

    def __init__(self, description: str, revoked_jtis: list[str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.revoked_jtis = revoked_jtis or []


async def issue(conn: asyncpg.Connection, *, username: str, scopes: list[str], access_jti: str,
                now: datetime, idle_s: int, family_expires_at: datetime,
                family_id: str | None = None) -> Issued:
    """A new refresh token: of a new family (sign-in) or the next one of `family_id`."""
    token = secrets.token_urlsafe(32)
    expires_at = min(now + timedelta(seconds=idle_s), family_expires_at)
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, username, scopes, access_jti,"
        " issued_at, expires_at, family_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        digest(token), family_id or uuid.uuid4().hex, username, scopes, access_jti, now,
        expires_at, family_expires_at)
    return Issued(token, max(1, int((expires_at - now).total_seconds())))


async def redeem(conn: asyncpg.Connection, token: str, now: datetime,
                 live_since: datetime) -> Redeemable:
    """Check and mark used (call inside a transaction; the row stays locked until it ends).
    A reused token revokes its family before `Refused` is raised: commit that. Access tokens
    issued before `live_since` have expired anyway."""
    row = await conn.fetchrow(
        "SELECT r.*, p.revoked_at AS person_revoked_at FROM refresh_tokens r"
        " JOIN people p USING (username) WHERE token_hash = $1 FOR UPDATE OF r", digest(token))
    if row is None:
        raise Refused("unknown refresh token")
    if row["revoked_at"] is not None:
        raise Refused(f"refresh token revoked ({row['revoked_reason']})")
    if row["used_at"] is not None:
        jtis = await revoke_family(conn, row["family_id"], "reuse of a rotated refresh token",
                                   now, live_since)
        raise Refused("refresh token already used: the sign-in it belongs to is revoked",
                      jtis)
    if row["person_revoked_at"] is not None:
        raise Refused("the person is disabled")
    if min(row["expires_at"], row["family_expires_at"]) <= now:
        raise Refused("refresh token expired: sign in again")
    await conn.execute("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
                       row["token_hash"], now)
    return Redeemable(row["token_hash"], row["family_id"], row["username"], list(row["scopes"]),
                      row["family_expires_at"])


async def revoke_family(conn: asyncpg.Connection, family_id: str, reason: str,
                        now: datetime, live_since: datetime) -> list[str]:
    """Revoke every token of the family; returns the ids of the access tokens issued from it
    since `live_since`, which may still be unexpired (the caller publishes their revocation)."""
    rows = await conn.fetch(
        "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, $2),"
        " revoked_reason = coalesce(revoked_reason, $3)"
        " WHERE family_id = $1 RETURNING access_jti, issued_at", family_id, now, reason)
    return [r["access_jti"] for r in rows if r["issued_at"] >= live_since]


async def revoke_person(conn: asyncpg.Connection, username: str, reason: str,
                        now: datetime) -> int:
    """Revoke every live family of the person; returns how many tokens were still live."""
    status = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = $2, revoked_reason = $3"
        " WHERE username = $1 AND revoked_at IS NULL", username, now, reason)
    return int(status.split()[-1])


async def family_of(conn: asyncpg.Connection, token: str) -> str | None:
    family: str | None = await conn.fetchval(
        "SELECT family_id FROM refresh_tokens WHERE token_hash = $1", digest(token))
    return family


async def purge(conn: asyncpg.Connection, before: datetime) -> int:
    """Forget families that ended before `before` (they can no longer be redeemed)."""
    status = await conn.execute("DELETE FROM refresh_tokens WHERE family_expires_at < $1",
                                before)
    return int(status.split()[-1])
