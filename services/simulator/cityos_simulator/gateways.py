"""Register the demo city's device gateways with identity, once: an OAuth client per unit with
scope staff:report, whose credentials the simulator's field-staff feed signs in with.

    CITYOS_ADMIN_TOKEN=... python -m cityos_simulator.gateways --out .cityos/gateways.txt

Idempotent: a unit whose client in the file is still active in identity keeps it; a missing or
revoked one (a new database) gets a new client. The file is written with mode 0600; the token
comes from the environment, never the command line, and no secret is printed.
"""

import argparse
import asyncio
import os
import sys
from pathlib import Path

import httpx
import msgspec

from cityos_contracts.identity import ClientCredentials, ClientInfo, ClientRegistration
from cityos_kit.city import City
from cityos_kit.config import load_settings
from cityos_simulator.staff import read_gateways

SCOPES = ["staff:report"]


def demo_units(city: City) -> list[str]:
    """The traffic police (the city's detachment and its district brigades), whom hazchem asks
    for the nearest patrol, and the district urban-management bureaus' inspectors."""
    return [u["id"] for u in city.units
            if u["id"] == "JJZD" or u.get("parent") == "JJZD"
            or (u.get("parent") == "CGJ" and u["level"] == "district")]


async def provision(http: httpx.AsyncClient, out: Path, units: list[str]) -> list[str]:
    """Make sure every unit has an active gateway client in `out`; the units newly created."""
    kept = read_gateways(out) if out.is_file() else {}
    listed = await http.get("/clients")
    listed.raise_for_status()
    active = {c.client_id for c in msgspec.json.decode(listed.content, type=list[ClientInfo])
              if c.revoked_at is None}
    created = []
    for unit in units:
        if unit in kept and kept[unit][0] in active:
            continue
        answer = await http.post("/clients", content=msgspec.json.encode(ClientRegistration(
            name=f"{unit} device gateway (demo)", unit=unit, scopes=SCOPES,
            description="the simulator's field staff of this unit")),
            headers={"content-type": "application/json"})
        if answer.status_code != 201:
            raise RuntimeError(f"identity refused a gateway for {unit}: {answer.status_code} "
                               f"{answer.text[:300]}")
        creds = msgspec.json.decode(answer.content, type=ClientCredentials)
        kept[unit] = (creds.client_id, creds.client_secret)
        created.append(unit)
    tmp = out.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # Created private: the secrets are never readable by others, not even for a moment.
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                   encoding="utf-8") as f:
        f.write("".join(f"gateway {u} client_id={cid} client_secret={secret}\n"
                        for u, (cid, secret) in sorted(kept.items())))
    tmp.replace(out)
    return created


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cityos_simulator.gateways", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--issuer", default=os.environ.get("CITYOS_AUTH_ISSUER",
                                                      "http://127.0.0.1:8009"))
    p.add_argument("--units", nargs="*", help="default: the traffic police and the district "
                                              "urban-management bureaus")
    args = p.parse_args(argv)
    token = os.environ.get("CITYOS_ADMIN_TOKEN", "")
    if not token:
        p.error("set CITYOS_ADMIN_TOKEN to an administrator's access token")
    units = args.units or demo_units(City(load_settings("simulator").city_dir))

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=args.issuer, timeout=30.0,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            return await provision(http, args.out, units)

    try:
        created = asyncio.run(run())
    except (httpx.HTTPError, RuntimeError) as exc:
        print(f"gateways: {exc}", file=sys.stderr)
        return 1
    print(f"gateways: {len(units)} units in {args.out}, new: {', '.join(created) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
