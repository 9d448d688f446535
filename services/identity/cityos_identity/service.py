"""The identity service's logic: clients, people, tokens, revocations and the audit log."""

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from cityos_contracts.identity import (
    AuditEvent,
    ClientCredentials,
    ClientInfo,
    ClientRegistration,
    PersonInfo,
    Revocation,
    UserCreated,
    UserRegistration,
)
from cityos_contracts.subjects import REVOCATIONS
from cityos_identity import passwords, refresh, roles
from cityos_identity.keys import KeyStore
from cityos_kit.auth import AuthSettings, InvalidToken, TokenVerifier
from cityos_kit.bus import Bus
from cityos_kit.city import City
from cityos_kit.config import from_env


@dataclass(frozen=True)
class IdentityConfig:
    """CITYOS_* settings of the identity service only."""

    token_lifetime_s: int = 600
    # A person's sign-in (password grant) is renewed with refresh tokens: each stays usable
    # this long unused, and the sign-in ends after the second limit whatever happens.
    refresh_idle_s: int = 8 * 3600
    refresh_lifetime_s: int = 24 * 3600
    secret_overlap_hours: float = 24.0
    audit_retention_days: int = 365
    bootstrap_file: Path = Path(".cityos/admin-credentials.txt")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "IdentityConfig":
        return from_env(cls, env=env)


class IdentityError(Exception):
    """A request the service refuses; `code` is the OAuth error or an HTTP status."""

    def __init__(self, code: str | int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class LocalVerifier(TokenVerifier):
    """The issuer verifies its own tokens from its key store (no HTTP to itself)."""

    def __init__(self, keys: KeyStore, auth: AuthSettings) -> None:
        super().__init__(auth.issuer, auth.audience, leeway_s=auth.leeway_s, cache_s=60)
        self.keystore = keys

    async def _fetch_jwks(self) -> None:
        await self.keystore.load()  # another replica may have rotated the key
        self.set_jwks(self.keystore.jwks())


@dataclass(frozen=True)
class Grant:
    """What the token endpoint answers."""

    access_token: str
    expires_in: int
    scopes: list[str]
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    subject: str = ""  # whom it was issued to (a refresh token does not say beforehand)


def _person_info(row: asyncpg.Record) -> PersonInfo:
    return PersonInfo(username=row["username"], name=row["name"], unit=row["unit"],
                      department=row["department"], roles=list(row["roles"]),
                      created_at=row["created_at"], disabled_at=row["revoked_at"])


def _client_info(row: asyncpg.Record) -> ClientInfo:
    return ClientInfo(
        client_id=row["client_id"], name=row["name"], unit=row["unit"],
        department=row["department"], scopes=list(row["scopes"]), created_at=row["created_at"],
        revoked_at=row["revoked_at"], secret_rotated_at=row["secret_rotated_at"],
        description=row["description"],
    )


class Identity:
    def __init__(self, pool: asyncpg.Pool, keys: KeyStore, city: City, auth: AuthSettings,
                 config: IdentityConfig, verifier: LocalVerifier) -> None:
        self.pool, self.keys, self.city, self.auth, self.config = pool, keys, city, auth, config
        self.verifier = verifier
        self.bus: Bus | None = None

    # -- units ------------------------------------------------------------------------------
    def department_of(self, unit: str) -> str:
        for u in self.city.units:
            if u["id"] == unit:
                return str(u["department"])
        raise IdentityError(422, f"unknown unit {unit!r}: not in the city's units.json")

    @staticmethod
    def check_scopes(scopes: list[str]) -> None:
        unknown = [s for s in scopes if not roles.is_known(s)]
        if unknown:
            raise IdentityError(422, f"unknown scopes: {', '.join(unknown)}")

    # -- tokens -----------------------------------------------------------------------------
    def issue(self, *, sub: str, kind: str, unit: str, department: str, roles_: list[str],
              scopes: list[str], name: str = "", lifetime_s: int | None = None,
              **extra: Any) -> tuple[str, int]:
        lifetime = lifetime_s or self.config.token_lifetime_s
        now = int(time.time())
        claims = {
            "iss": self.auth.issuer, "aud": self.auth.audience, "sub": sub, "iat": now,
            "nbf": now, "exp": now + lifetime, "jti": uuid.uuid4().hex, "kind": kind,
            "unit": unit, "department": department, "roles": roles_,
            "scope": " ".join(scopes), "name": name, **extra,
        }
        return self.keys.sign(claims), lifetime

    async def client_token(self, client_id: str, secret: str, scope: str | None,
                           lifetime_s: int | None = None) -> Grant:
        row = await self.pool.fetchrow("SELECT * FROM clients WHERE client_id = $1", client_id)
        if row is None or row["revoked_at"] is not None:
            raise IdentityError("invalid_client", "unknown or revoked client")
        ok = await asyncio.to_thread(passwords.verify_secret, secret, row["secret_hash"])
        if not ok and row["previous_valid_until"] and \
                row["previous_valid_until"] > datetime.now(UTC):
            ok = await asyncio.to_thread(passwords.verify_secret, secret,
                                         row["previous_secret_hash"])
        if not ok:
            raise IdentityError("invalid_client", "client authentication failed")
        granted = roles.grant(scope, list(row["scopes"]))
        if granted is None:
            raise IdentityError("invalid_scope", f"scope {scope!r} exceeds the client's scopes")
        token, lifetime = self.issue(
            sub=client_id, kind="service" if row["service"] else "client", unit=row["unit"],
            department=row["department"], roles_=[], scopes=granted, name=row["name"],
            lifetime_s=lifetime_s, client_id=client_id)
        return Grant(token, lifetime, granted)

    async def person_token(self, username: str, password: str, scope: str | None) -> Grant:
        """The password grant: an access token and the first refresh token of a sign-in."""
        row = await self.pool.fetchrow("SELECT * FROM people WHERE username = $1", username)
        ok = row is not None and row["revoked_at"] is None and await asyncio.to_thread(
            passwords.verify_secret, password, row["password_hash"])
        if not ok or row is None:
            raise IdentityError("invalid_grant", "wrong username or password")
        granted = roles.grant(scope, roles.scopes_for_roles(list(row["roles"])))
        if granted is None:
            raise IdentityError("invalid_scope", f"scope {scope!r} exceeds the person's roles")
        now = datetime.now(UTC)
        family_ends = now + timedelta(seconds=self.config.refresh_lifetime_s)
        async with self.pool.acquire() as conn:
            return await self._person_grant(conn, row, granted, now, family_ends, None)

    async def _person_grant(self, conn: asyncpg.Connection, person: asyncpg.Record,
                            granted: list[str], now: datetime, family_ends: datetime,
                            family_id: str | None) -> Grant:
        jti = uuid.uuid4().hex
        token, lifetime = self.issue(
            sub=person["username"], kind="person", unit=person["unit"],
            department=person["department"], roles_=list(person["roles"]), scopes=granted,
            name=person["name"], jti=jti)
        issued = await refresh.issue(
            conn, username=person["username"], scopes=granted, access_jti=jti, now=now,
            idle_s=self.config.refresh_idle_s, family_expires_at=family_ends,
            family_id=family_id)
        return Grant(token, lifetime, granted, issued.token, issued.expires_in,
                     person["username"])

    async def refresh_token(self, token: str, scope: str | None) -> Grant:
        """The refresh_token grant: rotate the refresh token and answer a new access token.
        The scopes are those of the sign-in still allowed by the person's roles now; `scope`
        may narrow them (RFC 6749 §6)."""
        now = datetime.now(UTC)
        live_since = now - timedelta(seconds=self.config.token_lifetime_s)
        refused: refresh.Refused | None = None
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                try:
                    found = await refresh.redeem(conn, token, now, live_since)
                except refresh.Refused as exc:
                    refused = exc  # leave the transaction committing a reuse's revocations
                else:
                    person = await conn.fetchrow("SELECT * FROM people WHERE username = $1",
                                                 found.username)
                    allowed = set(roles.scopes_for_roles(list(person["roles"])))
                    granted = roles.grant(scope, [s for s in found.scopes if s in allowed])
                    if granted is None:
                        raise IdentityError("invalid_scope",
                                            f"scope {scope!r} exceeds the sign-in's scopes")
                    return await self._person_grant(conn, person, granted, now,
                                                    found.family_expires_at, found.family_id)
        await self.cut_off(refused.revoked_jtis, now, "refresh token reused")
        raise IdentityError("invalid_grant", refused.description)

    async def sign_out(self, token: str) -> str:
        """RFC 7009 revocation: a refresh token ends its sign-in (and the access tokens issued
        from it); an access token of this issuer is revoked alone. Unknown tokens are ignored
        (the answer must not tell whether a token existed); returns what was done."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            family = await refresh.family_of(conn, token)
            if family is not None:
                jtis = await refresh.revoke_family(
                    conn, family, "signed out", now,
                    now - timedelta(seconds=self.config.token_lifetime_s))
                await self.cut_off(jtis, now, "signed out")
                return "refresh_token"
        try:
            principal = await self.verifier.verify(token)
        except InvalidToken:
            return "unknown"
        await self.cut_off([principal.token_id], now, "signed out")
        return "access_token"

    async def cut_off(self, jtis: list[str], at: datetime, reason: str) -> None:
        """Revoke single access tokens everywhere at once (they outlive their refresh token)."""
        for jti in jtis:
            await self.publish_revocation(Revocation(
                revocation_id=uuid.uuid4().hex, revoked_at=at, token_id=jti, reason=reason))

    async def end_sessions(self, username: str, reason: str) -> None:
        """Every refresh token and every access token of the person stops working."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            await refresh.revoke_person(conn, username, reason, now)
        await self.publish_revocation(Revocation(
            revocation_id=uuid.uuid4().hex, revoked_at=now, sub=username, reason=reason))

    # -- clients ----------------------------------------------------------------------------
    async def create_client(self, reg: ClientRegistration,
                            service: str | None = None) -> ClientCredentials:
        department = self.department_of(reg.unit)
        self.check_scopes(reg.scopes)
        client_id = f"{service or 'cli'}-{uuid.uuid4().hex[:12]}"
        secret = passwords.new_secret()
        hashed = await asyncio.to_thread(passwords.hash_secret, secret)
        await self.pool.execute(
            "INSERT INTO clients (client_id, name, unit, department, scopes, description,"
            " service, secret_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            client_id, reg.name, reg.unit, department, sorted(set(reg.scopes)),
            reg.description, service, hashed)
        return ClientCredentials(client_id=client_id, client_secret=secret, unit=reg.unit,
                                 scopes=sorted(set(reg.scopes)))

    async def list_clients(self) -> list[ClientInfo]:
        rows = await self.pool.fetch("SELECT * FROM clients ORDER BY created_at, client_id")
        return [_client_info(r) for r in rows]

    async def rotate_secret(self, client_id: str, overlap_hours: float) -> ClientCredentials:
        secret = passwords.new_secret()
        hashed = await asyncio.to_thread(passwords.hash_secret, secret)
        until = datetime.now(UTC) + timedelta(hours=overlap_hours)
        row = await self.pool.fetchrow(
            "UPDATE clients SET previous_secret_hash = secret_hash, previous_valid_until = $2,"
            " secret_hash = $3, secret_rotated_at = now()"
            " WHERE client_id = $1 AND revoked_at IS NULL RETURNING *",
            client_id, until, hashed)
        if row is None:
            raise IdentityError(404, f"no active client {client_id!r}")
        return ClientCredentials(client_id=client_id, client_secret=secret, unit=row["unit"],
                                 scopes=list(row["scopes"]), previous_secret_valid_until=until)

    async def revoke_client(self, client_id: str, reason: str = "") -> ClientInfo:
        row = await self.pool.fetchrow(
            "UPDATE clients SET revoked_at = coalesce(revoked_at, now())"
            " WHERE client_id = $1 RETURNING *", client_id)
        if row is None:
            raise IdentityError(404, f"no client {client_id!r}")
        await self.publish_revocation(Revocation(
            revocation_id=uuid.uuid4().hex, revoked_at=row["revoked_at"], sub=client_id,
            reason=reason or "client revoked"))
        return _client_info(row)

    async def publish_revocation(self, revocation: Revocation) -> None:
        self.verifier.revoke(revocation)  # this replica at once; the others through NATS
        if self.bus is not None:
            await self.bus.publish(REVOCATIONS.pattern, revocation,
                                   msg_id=revocation.revocation_id)

    # -- people -----------------------------------------------------------------------------
    async def create_person(self, reg: UserRegistration) -> UserCreated:
        department = self.department_of(reg.unit)
        password = reg.password or passwords.new_secret()
        hashed = await asyncio.to_thread(passwords.hash_secret, password)
        try:
            await self.pool.execute(
                "INSERT INTO people (username, name, unit, department, roles, password_hash)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                reg.username, reg.name, reg.unit, department, list(reg.roles), hashed)
        except asyncpg.UniqueViolationError as exc:
            raise IdentityError(409, f"person {reg.username!r} already exists") from exc
        return UserCreated(username=reg.username, unit=reg.unit, roles=list(reg.roles),
                           scopes=roles.scopes_for_roles(list(reg.roles)),
                           password=None if reg.password else password)

    async def change_password(self, username: str, current: str, new: str) -> None:
        row = await self.pool.fetchrow(
            "SELECT * FROM people WHERE username = $1 AND revoked_at IS NULL", username)
        if row is None or not await asyncio.to_thread(passwords.verify_secret, current,
                                                      row["password_hash"]):
            raise IdentityError(403, "the current password is wrong")
        if new == current:
            raise IdentityError(422, "the new password must differ from the current one")
        hashed = await asyncio.to_thread(passwords.hash_secret, new)
        await self.pool.execute("UPDATE people SET password_hash = $2 WHERE username = $1",
                                username, hashed)
        await self.end_sessions(username, "password changed")

    async def disable_person(self, username: str) -> PersonInfo:
        row = await self.pool.fetchrow(
            "UPDATE people SET revoked_at = coalesce(revoked_at, now()) WHERE username = $1"
            " RETURNING *", username)
        if row is None:
            raise IdentityError(404, f"no person {username!r}")
        await self.end_sessions(username, "person disabled")
        return _person_info(row)

    # -- audit ------------------------------------------------------------------------------
    async def store_audit(self, event: AuditEvent) -> None:
        """Idempotent on the event id: a redelivered event is not a second entry."""
        await self.pool.execute(
            "INSERT INTO audit_log (event_id, at, service, actor, actor_kind, unit, action,"
            " resource, outcome, status_code, ip, trace_id, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            " ON CONFLICT (event_id) DO NOTHING",
            event.event_id, event.at, event.service, event.actor, event.actor_kind, event.unit,
            event.action, event.resource, event.outcome, event.status_code, event.ip,
            event.trace_id, event.detail)

    async def query_audit(self, *, actor: str | None, unit: str | None, action: str | None,
                          since: datetime | None, until: datetime | None,
                          before_seq: int | None, limit: int) -> tuple[list[AuditEvent], int | None]:
        rows = await self.pool.fetch(
            "SELECT * FROM audit_log WHERE ($1::text IS NULL OR actor = $1)"
            " AND ($2::text IS NULL OR unit = $2) AND ($3::text IS NULL OR action = $3)"
            " AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5)"
            " AND ($6::bigint IS NULL OR seq < $6) ORDER BY seq DESC LIMIT $7",
            actor, unit, action, since, until, before_seq, limit + 1)
        events = [AuditEvent(
            event_id=r["event_id"], at=r["at"], service=r["service"], actor=r["actor"],
            actor_kind=r["actor_kind"], unit=r["unit"], action=r["action"],
            resource=r["resource"], outcome=r["outcome"], status_code=r["status_code"],
            ip=r["ip"], trace_id=r["trace_id"], detail=r["detail"]) for r in rows[:limit]]
        more = len(rows) > limit
        return events, (rows[limit - 1]["seq"] if more else None)

    async def apply_retention(self) -> int:
        removed = await self.pool.fetchval("SELECT audit_log_apply_retention($1)",
                                           self.config.audit_retention_days)
        async with self.pool.acquire() as conn:  # ended sign-ins are of no further use
            await refresh.purge(conn, datetime.now(UTC) - timedelta(days=1))
        return int(removed or 0)
