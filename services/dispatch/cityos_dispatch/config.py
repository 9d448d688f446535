"""Dispatch's own settings (`CITYOS_DISPATCH_*`), next to the kit's shared `Settings`."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityos_kit.config import from_env


@dataclass(frozen=True)
class DispatchSettings:
    # The event hub's base URL (the Kubernetes Service `events` by default).
    events_url: str = "http://events"
    # Every deadline of categories.json is multiplied by this: 1 in a city, small in tests.
    time_scale: float = 1.0
    # A reminder goes out when this share of the time to a deadline has passed.
    remind_at: float = 0.8
    # How often the timer loop looks for due timers (seconds): the escalation's precision.
    tick_s: float = 1.0
    # Case events handled at once, of different cases (one case's in order): an accepted case
    # is not queued behind other cases' events. Each holds a connection of the worker's pool.
    consumer_parallel: int = 16
    # A raised priority caps the category's deadlines (minutes to accept, hours to dispose).
    high_accept_min: float = 15.0
    high_dispose_h: float = 24.0
    urgent_accept_min: float = 10.0
    urgent_dispose_h: float = 4.0
    # Local time of the city, for rules by hour of day.
    timezone: str = "Asia/Shanghai"
    # A reporter may reopen a closed case this long after closure (hours).
    reopen_window_h: float = 72.0
    # Field staff positions go to ingestion as this observation dataset (registered there,
    # see staff.FIELD_STAFF_DATASET); the nearest query asks the spatio-temporal service for it.
    staff_dataset: str = "field_staff"
    staff_dataset_version: int = 1
    # Positions are forwarded in one batch per this many seconds.
    position_flush_s: float = 1.0
    # A position older than this does not count for "nearest on-duty staff" (seconds).
    position_max_age_s: float = 600.0
    # NATS request/reply timeout for the spatio-temporal queries (seconds).
    query_timeout_s: float = 5.0
    # Seed the routing rules from categories.json when there are none.
    seed_rules: bool = True
    # Dispatch an accepted case by the rules at once; off: the center dispatches by hand (GET
    # /route/{case_id} suggests the unit) and dispatch still runs the deadlines.
    auto_dispatch: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "DispatchSettings":
        return from_env(cls, prefix="CITYOS_DISPATCH_", env=env, **overrides)
