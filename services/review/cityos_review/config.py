"""The review's own settings (`CITYOS_REVIEW_*`), next to the kit's shared `Settings`."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cityos_kit.config import from_env


@dataclass(frozen=True)
class ReviewSettings:
    # Local time of the city: report periods (weeks from Monday, months) and daily charts.
    timezone: str = "Asia/Shanghai"
    # Without start/end, figures cover this many days up to now.
    default_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "ReviewSettings":
        return from_env(cls, prefix="CITYOS_REVIEW_", env=env, **overrides)
