"""Typed settings read from the environment (`CITYOS_*`); the real environment wins over `.env`."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CITY_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "city"


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str = "postgresql://postgres@127.0.0.1:5432/cityos"
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str = ""
    nats_password: str = ""
    # Namespace of every subject and stream: one city per namespace, one namespace per test run.
    nats_prefix: str = "cityos"
    # JetStream replicas per stream: 1 for a single server, 3 for a Kubernetes cluster.
    stream_replicas: int = 1
    # How long a consumer's unacknowledged message waits before redelivery (a crashed
    # process's messages come back after this).
    ack_wait_s: float = 60.0
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    city_dir: Path = DEFAULT_CITY_DIR
    log_level: str = "INFO"
    otlp_endpoint: str = ""  # e.g. http://tempo:4318; no exporter when empty
    max_body_mb: int = 64

    @property
    def stream_prefix(self) -> str:
        return self.nats_prefix.upper().replace(".", "_").replace("-", "_")


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


def _coerce(value: str, kind: Any) -> Any:
    if kind in (bool, "bool"):
        if value.strip().lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            raise ValueError(value)
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, "int"):
        return int(value)
    if kind in (float, "float"):
        return float(value)
    if kind in (Path, "Path"):
        return Path(value)
    return value


C = TypeVar("C")


def from_env(cls: type[C], prefix: str = "CITYOS_", env: Mapping[str, str] | None = None,
             **overrides: Any) -> C:
    """A frozen settings dataclass from `<prefix><FIELD>` variables (.env first, then the real
    environment on top); a value that does not fit its field's type is an error naming both."""
    source = {**_read_dotenv(Path(".env")), **(env if env is not None else os.environ)}
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        key = f"{prefix}{f.name.upper()}"
        if f.name not in overrides and key in source:
            try:
                values[f.name] = _coerce(source[key], f.type)
            except ValueError as exc:
                raise ValueError(f"{key}={source[key]!r} is not a valid {f.type}") from exc
    return cls(**values, **overrides)


def load_settings(service: str, env: Mapping[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Settings for `service` from CITYOS_* variables."""
    return from_env(Settings, env=env, service=service, **overrides)
