"""The services behind the screens, run as real processes on free ports against this run's
database and NATS namespace: identity (sign-in), ingestion, spatio-temporal, event hub, maps,
and the simulator feeding vehicles, sensors and roads through the public ingestion API.

Used by the browser tests and by benchmarks/maps_fps.py.
"""

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    database_url: str
    nats_prefix: str
    logs: Path
    vehicles: int = 300
    gps_interval_s: float = 4.0
    tick_s: float = 2.0
    push_interval_s: float = 1.0
    maps_env: dict[str, str] = field(default_factory=dict)
    identity_env: dict[str, str] = field(default_factory=dict)
    with_dispatch: bool = False  # dispatch is optional: the screens degrade without it
    urls: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def maps(self) -> str:
        return self.urls["maps"]

    def _env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "CITYOS_DATABASE_URL": self.database_url,
                "CITYOS_NATS_PREFIX": self.nats_prefix, "CITYOS_LOG_LEVEL": "WARNING",
                "CITYOS_AUTH_ISSUER": self.urls["identity"],
                "CITYOS_AUTH_RATE_LIMIT_PER_MINUTE": "1000000",
                "CITYOS_BOOTSTRAP_FILE": str(self.logs / "bootstrap.txt"), **extra}

    def _spawn(self, name: str, args: list[str], **env: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self._files.append(log)
        self.processes.append(subprocess.Popen(args, env=self._env(**env), stdout=log,
                                               stderr=subprocess.STDOUT, cwd=ROOT))

    def _serve(self, name: str, **env: str) -> None:
        port = free_port()
        self.urls[name] = f"http://127.0.0.1:{port}"
        self._spawn(name, [str(BIN / f"cityos-{name}")], CITYOS_HTTP_PORT=str(port), **env)

    def _wait(self, *names: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            while True:
                try:
                    if httpx.get(self.urls[name] + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"a service exited; see {self.logs}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become ready; see {self.logs}/{name}.log")
                time.sleep(0.3)

    def _bootstrap(self) -> None:
        for line in (self.logs / "bootstrap.txt").read_text().splitlines():
            parts = line.split()
            values = dict(p.split("=", 1) for p in parts if "=" in p)
            if parts[0] == "admin":
                self.secrets["admin"] = values["password"]
            elif parts[0] == "service":
                self.secrets[f"{parts[1]}_id"] = values["client_id"]
                self.secrets[f"{parts[1]}_secret"] = values["client_secret"]

    def start(self) -> "Stack":
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / "bootstrap.txt").unlink(missing_ok=True)
        self.urls["identity"] = f"http://127.0.0.1:{free_port()}"
        self._spawn("identity", [str(BIN / "cityos-identity")],
                    CITYOS_HTTP_PORT=self.urls["identity"].rsplit(":", 1)[1], **self.identity_env)
        self._wait("identity")
        self._bootstrap()
        for name in ("ingestion", "spatiotemporal", "events"):
            self._serve(name)
        self._wait("ingestion", "spatiotemporal", "events")
        if self.with_dispatch:
            self._serve("dispatch", CITYOS_DISPATCH_EVENTS_URL=self.urls["events"],
                        CITYOS_CLIENT_ID=self.secrets["dispatch_id"],
                        CITYOS_CLIENT_SECRET=self.secrets["dispatch_secret"])
            self._wait("dispatch")
            self._register_staff_dataset()
        self._serve("maps", CITYOS_MAPS_EVENTS_URL=self.urls["events"],
                    CITYOS_MAPS_SPATIOTEMPORAL_URL=self.urls["spatiotemporal"],
                    CITYOS_MAPS_INGESTION_URL=self.urls["ingestion"],
                    CITYOS_MAPS_DISPATCH_URL=self.urls.get(
                        "dispatch", f"http://127.0.0.1:{free_port()}"),  # else not deployed
                    CITYOS_MAPS_REVIEW_URL=f"http://127.0.0.1:{free_port()}",
                    CITYOS_MAPS_PUSH_INTERVAL_S=str(self.push_interval_s),
                    CITYOS_CLIENT_ID=self.secrets["maps_id"],
                    CITYOS_CLIENT_SECRET=self.secrets["maps_secret"], **self.maps_env)
        self._spawn("simulator", [
            str(BIN / "cityos-simulator"), "--vehicles", str(self.vehicles), "--tick",
            str(self.tick_s), "--gps-interval", str(self.gps_interval_s), "--sensors", "12",
            "--cameras", "6", "--sensor-interval", "10"],
            CITYOS_INGESTION_URL=self.urls["ingestion"],
            CITYOS_CLIENT_ID=self.secrets["simulator_id"],
            CITYOS_CLIENT_SECRET=self.secrets["simulator_secret"])
        self._wait("maps")
        return self

    def _register_staff_dataset(self) -> None:
        """As `./cityos run` does: field staff positions go through ingestion (dispatch prints
        the dataset's registration)."""
        registration = subprocess.run([str(BIN / "cityos-dispatch"), "staff-dataset"],
                                      check=True, capture_output=True).stdout
        token = self.token("admin", self.secrets["admin"])
        response = httpx.post(self.urls["ingestion"] + "/datasets", content=registration,
                              timeout=30, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/json"})
        assert response.status_code in (200, 201), response.text

    def stop(self) -> None:
        for p in self.processes:
            with contextlib.suppress(ProcessLookupError):
                p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self._files:
            f.close()

    # -- people and clients -------------------------------------------------------------------------

    def token(self, username: str, password: str, scope: str | None = None) -> str:
        form = {"grant_type": "password", "username": username, "password": password}
        if scope:
            form["scope"] = scope
        response = httpx.post(self.urls["identity"] + "/oauth/token", data=form, timeout=10)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self.token("admin", self.secrets["admin"], "identity:admin")
        response = httpx.post(self.urls["identity"] + path, json=body, timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def person(self, username: str, unit: str, roles: list[str], name: str = "") -> str:
        """Register a person (once: the password is derived from the name); returns their
        password."""
        password = f"pw-{username}-0123456789"
        try:
            self.admin("/people", {"username": username, "unit": unit, "roles": roles,
                                   "name": name or username, "password": password})
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 409:
                raise
        return password

    def client(self, name: str, scopes: list[str], unit: str = "CMD") -> tuple[str, str]:
        created = self.admin("/clients", {"name": name, "unit": unit, "scopes": scopes})
        return created["client_id"], created["client_secret"]


@contextlib.contextmanager
def running(database_url: str, nats_prefix: str, logs: Path, **options: Any) -> Iterator[Stack]:
    stack = Stack(database_url, nats_prefix, logs, **options)
    try:
        yield stack.start()
    finally:
        stack.stop()
