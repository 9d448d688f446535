"""Identities, credentials, tokens, revocations and audit events (identity service and the kit).

OAuth 2.0 payloads keep the field names of RFC 6749 so any OAuth client library can read them;
the extra `schema` tag is allowed there (clients ignore unknown response fields).
"""

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

PrincipalKind = Literal["client", "person", "service"]
Role = Literal["leader", "operator", "unit_staff", "field_staff", "data_steward", "sre", "auditor"]
Outcome = Literal["success", "denied", "failure"]
UnitId = Annotated[str, Meta(min_length=1, max_length=64, description="unit id from units.json")]
ScopeName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_.\-]*(:[A-Za-z0-9_.\-*]+)*$",
                                 max_length=128)]
Username = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_.\-]{1,62}$")]

# A command-center unit sees every unit; so do these roles (they watch or audit the platform).
COMMAND_CENTER = "CMD"
SEE_ALL_ROLES = frozenset({"sre", "auditor"})


class Principal(Struct, frozen=True, tag_field="schema", tag="cityos.principal.v1"):
    """Who is calling: the verified claims of a bearer token, as every service sees them."""

    sub: str
    kind: PrincipalKind
    unit: str
    department: str
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    issuer: str = ""
    token_id: str = ""  # the token's jti
    expires_at: datetime | None = None
    name: str = ""

    def has_scope(self, scope: str, resource: str | None = None) -> bool:
        """`ingest:write` grants every dataset; `ingest:write:gps` grants only dataset `gps`."""
        if scope in self.scopes:
            return True
        return resource is not None and f"{scope}:{resource}" in self.scopes

    def has_narrowed(self, scope: str) -> bool:
        """Whether any `scope:<resource>` form is granted (the handler checks which resource)."""
        return any(s.startswith(scope + ":") for s in self.scopes)

    def sees_all_units(self) -> bool:
        return self.unit == COMMAND_CENTER or bool(SEE_ALL_ROLES.intersection(self.roles))

    def can_see_unit(self, unit_id: str, unit_department: str | None = None) -> bool:
        """Command center, SREs and auditors see every unit; a department's city-level unit (its
        id is the department code) sees its department's units; any other unit sees itself.
        Without `unit_department`, it is read from the id (`CGJ-329901` belongs to `CGJ`)."""
        if self.sees_all_units() or unit_id == self.unit:
            return True
        department = unit_department or unit_id.split("-", 1)[0]
        return self.unit == self.department and department == self.department


class TokenRequest(Struct, frozen=True):
    """RFC 6749 token request (form-encoded; untagged). Client credentials may instead come in
    HTTP Basic. Every field is optional here so that a bad request gets an OAuth error."""

    grant_type: str = ""
    client_id: str | None = None
    client_secret: str | None = None
    username: str | None = None
    password: str | None = None
    scope: str | None = None
    refresh_token: str | None = None  # grant_type=refresh_token


class TokenResponse(Struct, frozen=True, omit_defaults=True, tag_field="schema",
                    tag="cityos.token_response.v1"):
    """RFC 6749 §5.1 access token response. The password and refresh_token grants add a
    refresh token (§6): single use, each use answers a new one; absent, not null, otherwise."""

    access_token: str
    expires_in: int
    scope: str  # space-separated
    token_type: Literal["Bearer"]
    refresh_token: str | None = None
    refresh_expires_in: int | None = None  # seconds the new refresh token stays usable


class TokenRevocation(Struct, frozen=True):
    """RFC 7009 revocation request (form-encoded; untagged): signing out. Revoking a refresh
    token ends its whole chain of rotations."""

    token: str = ""
    token_type_hint: str | None = None


class OAuthError(Struct, frozen=True):
    """RFC 6749 §5.2 error response (untagged: OAuth clients read exactly these fields)."""

    error: Literal["invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                   "unsupported_grant_type", "invalid_scope"]
    error_description: str = ""


class ClientRegistration(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                         tag="cityos.client_registration.v1"):
    """A machine client (a department system or integrator), bound to one unit."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    unit: UnitId
    scopes: list[ScopeName]
    description: str = ""


class ClientCredentials(Struct, frozen=True, tag_field="schema",
                        tag="cityos.client_credentials.v1"):
    """The client's id and secret: the secret is shown this once and stored only hashed."""

    client_id: str
    client_secret: str
    unit: str
    scopes: list[str]
    # After a rotation: until when the previous secret still works.
    previous_secret_valid_until: datetime | None = None


class SecretRotation(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.secret_rotation.v1"):
    overlap_hours: Annotated[float, Meta(ge=0, le=24 * 30)] = 24.0


class ClientInfo(Struct, frozen=True, tag_field="schema", tag="cityos.client_info.v1"):
    """A client as listed to administrators: never its secret."""

    client_id: str
    name: str
    unit: str
    department: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None
    secret_rotated_at: datetime | None = None
    description: str = ""


class UserRegistration(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                       tag="cityos.user_registration.v1"):
    """A person; scopes come from the roles (the role→scopes table of the identity service)."""

    username: Username
    unit: UnitId
    roles: Annotated[list[Role], Meta(min_length=1)]
    name: str = ""
    # Omitted: a random password is generated and returned once.
    password: Annotated[str, Meta(min_length=12, max_length=256)] | None = None


class UserCreated(Struct, frozen=True, tag_field="schema", tag="cityos.user_created.v1"):
    username: str
    unit: str
    roles: list[str]
    scopes: list[str]
    password: str | None = None  # only when generated


class PasswordChange(Struct, frozen=True, forbid_unknown_fields=True, tag_field="schema",
                     tag="cityos.password_change.v1"):
    """A person changes their own password; every session of theirs ends (sign in again)."""

    current_password: Annotated[str, Meta(min_length=1, max_length=256)]
    new_password: Annotated[str, Meta(min_length=12, max_length=256)]


class PersonInfo(Struct, frozen=True, tag_field="schema", tag="cityos.person_info.v1"):
    """A person as administrators see them: never the password hash."""

    username: str
    name: str
    unit: str
    department: str
    roles: list[str]
    created_at: datetime
    disabled_at: datetime | None = None


class Revocation(Struct, frozen=True, tag_field="schema", tag="cityos.revocation.v1"):
    """Reject, everywhere and at once, a client's (or person's) tokens or one token by its jti."""

    revocation_id: str
    revoked_at: datetime
    sub: str | None = None  # every token of this subject issued before revoked_at
    token_id: str | None = None  # one token
    reason: str = ""


class AuditEvent(Struct, frozen=True, tag_field="schema", tag="cityos.audit_event.v1"):
    """One entry of the append-only audit log: who, from which unit, did what, when, from where."""

    event_id: str
    at: datetime
    service: str
    actor: str  # token subject, or "anonymous"
    actor_kind: str
    unit: str
    action: str  # e.g. "POST /datasets" or "read personal_data"
    resource: str
    outcome: Outcome
    status_code: int | None = None
    ip: str = ""
    trace_id: str = ""
    detail: str = ""


class AuditPage(Struct, frozen=True, tag_field="schema", tag="cityos.audit_page.v1"):
    items: list[AuditEvent]
    # Pass as `before_seq` for the next (older) page; None on the last page.
    next_before_seq: int | None = None
