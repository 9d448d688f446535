"""First start of a new city: an operator login and a client per CityOS service.

The generated secrets go once to CITYOS_BOOTSTRAP_FILE (mode 0600) and the admin password
once to the log; in Kubernetes they are copied into Secrets and the file is removed.
"""

from cityos_contracts.identity import ClientRegistration, UserRegistration
from cityos_identity.roles import SERVICE_SCOPES
from cityos_identity.service import Identity
from cityos_kit.telemetry import logger

log = logger("cityos.identity.bootstrap")
ADMIN_ROLES = ["operator", "sre", "data_steward"]


async def bootstrap(identity: Identity) -> list[str]:
    """Create what is missing; returns the lines written to the bootstrap file."""
    lines: list[str] = []
    has_operator = await identity.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM people WHERE 'operator' = ANY(roles))")
    if not has_operator:
        created = await identity.create_person(UserRegistration(
            username="admin", unit="CMD", roles=ADMIN_ROLES,  # type: ignore[arg-type]
            name="Bootstrap administrator"))
        lines.append(f"admin username=admin password={created.password}")
        log.warning("bootstrap_admin_created", username="admin", password=created.password,
                    file=str(identity.config.bootstrap_file),
                    hint="sign in: POST /oauth/token grant_type=password; change it soon")
    existing = {r["service"] for r in await identity.pool.fetch(
        "SELECT service FROM clients WHERE service IS NOT NULL AND revoked_at IS NULL")}
    for service, scopes in SERVICE_SCOPES.items():
        if service in existing:
            continue
        creds = await identity.create_client(
            ClientRegistration(name=f"CityOS {service}", unit="CMD", scopes=list(scopes),
                               description="service client (bootstrap)"), service=service)
        lines.append(f"service {service} client_id={creds.client_id} "
                     f"client_secret={creds.client_secret}")
    if lines:
        path = identity.config.bootstrap_file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        path.chmod(0o600)
        log.info("bootstrap_credentials_written", file=str(path), entries=len(lines))
    return lines
