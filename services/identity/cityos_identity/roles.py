"""What each role of a person may do, and what each CityOS service's own client may do.

Scopes are `<area>:<verb>`, optionally narrowed by a resource (`ingest:write:gps`).
"""

from typing import Final

ROLE_SCOPES: Final[dict[str, tuple[str, ...]]] = {
    "leader": ("cases:read", "review:read", "stquery:read", "maps:read", "hazchem:read"),
    "operator": ("cases:read", "cases:act", "cases:dispatch", "stquery:read", "maps:read",
                 "ingest:read", "review:read", "dispatch:rules", "review:admin", "hazchem:read"),
    "unit_staff": ("cases:read", "cases:act", "stquery:read", "ingest:read"),
    "field_staff": ("cases:read", "cases:act", "cases:report", "staff:report"),
    "data_steward": ("ingest:read", "ingest:write", "ingest:admin", "stquery:read"),
    # SREs run the platform: they manage identities but do not read the audit log (auditors do).
    "sre": ("identity:admin", "ingest:read", "stquery:read", "cases:read", "ops:read"),
    "auditor": ("audit:read", "cases:read", "review:read", "ingest:read"),
}

# Each CityOS service's own client (service-to-service calls), created at bootstrap.
SERVICE_SCOPES: Final[dict[str, tuple[str, ...]]] = {
    "ingestion": ("stquery:read",),
    "spatiotemporal": ("ingest:read",),
    "events": ("stquery:read", "ingest:read", "cases:act"),
    "dispatch": ("cases:read", "cases:act", "cases:dispatch", "stquery:read"),
    "review": ("cases:read", "ingest:read", "stquery:read"),
    "maps": ("cases:read", "stquery:read", "review:read", "ingest:read"),
    "hazchem": ("stquery:read", "cases:report", "cases:read"),  # risk index: past incidents
    "simulator": ("ingest:write", "ingest:admin", "cases:report"),
}

KNOWN_SCOPES: Final = frozenset(
    s for scopes in (*ROLE_SCOPES.values(), *SERVICE_SCOPES.values()) for s in scopes
) | {"audit:read"}


def scopes_for_roles(roles: list[str] | tuple[str, ...]) -> list[str]:
    return sorted({s for role in roles for s in ROLE_SCOPES.get(role, ())})


def base_scope(scope: str) -> str:
    """`ingest:write:gps` → `ingest:write`."""
    return ":".join(scope.split(":")[:2])


def is_known(scope: str) -> bool:
    return base_scope(scope) in KNOWN_SCOPES


def grant(requested: str | None, allowed: list[str]) -> list[str] | None:
    """The scopes to put in a token: all allowed when none requested; None if any requested
    scope is not covered (`ingest:write` covers `ingest:write:gps`, not the reverse)."""
    if not requested:
        return sorted(allowed)
    wanted = requested.split()
    covered = set(allowed)
    if all(s in covered or base_scope(s) in covered for s in wanted):
        return sorted(set(wanted))
    return None
