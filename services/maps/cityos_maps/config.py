"""The themed-maps service's own settings (`CITYOS_MAPS_*`), next to the kit's `Settings`.

Service client credentials (for the feeds the screens share) are `CITYOS_CLIENT_ID` and
`CITYOS_CLIENT_SECRET`, as for every CityOS service that calls another one.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cityos_kit.config import from_env

PACKAGE = Path(__file__).parent


@dataclass(frozen=True)
class MapsSettings:
    events_url: str = "http://127.0.0.1:8003"
    spatiotemporal_url: str = "http://127.0.0.1:8002"
    ingestion_url: str = "http://127.0.0.1:8001"
    dispatch_url: str = "http://127.0.0.1:8005"
    review_url: str = "http://127.0.0.1:8006"
    # Where people sign in (password grant); empty: the token issuer (CITYOS_AUTH_ISSUER).
    identity_url: str = ""
    # Observation datasets drawn as live vehicles, and as sensors (comma-separated).
    vehicle_datasets: str = "vehicle_gps"
    sensor_datasets: str = "env_sensors"
    # The road network drawn under everything (an entity dataset of LineStrings).
    roads_dataset: str = "roads"
    # How often the screens get what changed (vehicles, figures); a city of 5,000 vehicles
    # reporting every 10 s changes ~1,000 positions per push at 2 s.
    push_interval_s: float = 2.0
    # A vehicle or sensor not heard from for this long leaves the map.
    position_max_age_s: float = 900.0
    # Finished cases older than this leave the screens' read model (figures count what is open,
    # today's, and the recent past).
    finished_case_days: float = 30.0
    upstream_timeout_s: float = 10.0
    # The city's time zone: "today" on the big screen starts at its midnight.
    timezone: str = "Asia/Shanghai"
    # Cached answers of other services shared by every screen (roads, entities, rankings).
    cache_ttl_s: float = 30.0
    # Extra or replacement thematic maps of the city (YAML files; same id replaces).
    themes_dir: str = ""
    # The built web application; empty: the one shipped in the package.
    static_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "MapsSettings":
        return from_env(cls, prefix="CITYOS_MAPS_", env=env)

    @property
    def vehicle_set(self) -> frozenset[str]:
        return frozenset(d.strip() for d in self.vehicle_datasets.split(",") if d.strip())

    @property
    def static_path(self) -> Path:
        return Path(self.static_dir) if self.static_dir else PACKAGE / "static"

    @property
    def sensor_set(self) -> frozenset[str]:
        return frozenset(d.strip() for d in self.sensor_datasets.split(",") if d.strip())


@dataclass(frozen=True)
class ServiceClient:
    """This service's own OAuth client, when it has one (else it calls with the user's token)."""

    client_id: str = ""
    client_secret: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServiceClient":
        source = os.environ if env is None else env
        return cls(source.get("CITYOS_CLIENT_ID", ""), source.get("CITYOS_CLIENT_SECRET", ""))
