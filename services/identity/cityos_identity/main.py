"""`cityos-identity`: run the service, or manage credentials from the command line.

    cityos-identity                                   serve the HTTP API
    cityos-identity create-client --unit CGJ --scopes ingest:write:gps cases:read [--name N]
    cityos-identity nats-config --prefix cityos --out deploy/nats/auth.conf [--secrets FILE]
"""

import argparse
import asyncio
from pathlib import Path

from cityos_contracts.identity import ClientRegistration
from cityos_identity import nats_config
from cityos_identity.app import MIGRATIONS, SCHEMA, build_app
from cityos_identity.keys import KeyStore
from cityos_identity.service import Identity, IdentityConfig, IdentityError, LocalVerifier
from cityos_kit import db
from cityos_kit.app import serve
from cityos_kit.auth import AuthSettings
from cityos_kit.city import City
from cityos_kit.config import load_settings

SERVICE = "identity"


async def _create_client(unit: str, scopes: list[str], name: str) -> None:
    settings = load_settings(SERVICE)
    auth, config = AuthSettings.from_env(), IdentityConfig.from_env()
    pool = await db.create_pool(settings, SCHEMA)
    try:
        await db.migrate(pool, SCHEMA, MIGRATIONS)
        keys = KeyStore(config.token_lifetime_s, pool)
        identity = Identity(pool, keys, City(settings.city_dir), auth, config,
                            LocalVerifier(keys, auth))
        creds = await identity.create_client(
            ClientRegistration(name=name or f"client of {unit}", unit=unit, scopes=scopes))
    finally:
        await pool.close()
    print(f"client_id={creds.client_id}")
    print(f"client_secret={creds.client_secret}  (shown once; stored only hashed)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="cityos-identity")
    commands = parser.add_subparsers(dest="command")
    create = commands.add_parser("create-client", help="register a client and print its secret")
    create.add_argument("--unit", required=True)
    create.add_argument("--scopes", nargs="+", required=True)
    create.add_argument("--name", default="")
    nats = commands.add_parser("nats-config", help="write the NATS users and permissions")
    nats.add_argument("--prefix", default="cityos")
    nats.add_argument("--out", type=Path, required=True)
    nats.add_argument("--secrets", type=Path, default=None)
    nats.add_argument("--env-passwords", action="store_true",
                      help="no secrets file: nats-server reads NATS_PASSWORD_<USER> from its "
                           "environment (Kubernetes Secrets)")
    args = parser.parse_args()

    if args.command == "create-client":
        try:
            asyncio.run(_create_client(args.unit, args.scopes, args.name))
        except IdentityError as exc:
            raise SystemExit(f"error: {exc.description}") from exc
    elif args.command == "nats-config" and args.env_passwords:
        args.out.write_text(nats_config.render(args.prefix))
        print(f"wrote {args.out}; users: {', '.join(nats_config.users())}")
    elif args.command == "nats-config":
        passwords = nats_config.write(args.prefix, args.out, args.secrets)
        print(f"wrote {args.out} with users {', '.join(sorted(passwords))}; "
              "passwords are in the secrets file beside it")
    else:
        settings = load_settings(SERVICE)
        asyncio.run(serve(build_app(settings), settings))


if __name__ == "__main__":
    main()
