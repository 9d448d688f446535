"""The event hub's own settings (`CITYOS_EVENTS_*`), next to the kit's shared `Settings`."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class EventsSettings:
    # Below this confidence a case stays `received` and waits for an operator to classify it.
    classify_threshold: float = 0.45
    # Reports this far apart in reported time are never one incident.
    merge_window_h: float = 72.0
    # A case closed longer ago than this is history: a new report there is a recurrence.
    closed_merge_window_h: float = 24.0
    # Candidates are looked for within this distance (metres), gazetteer precision added.
    merge_radius_m: float = 600.0
    # The probability of being one incident (merge.py's pair model) a candidate case needs to
    # take the report; chosen for F1 on the model's fitting set, not the evaluation set.
    merge_threshold: float = 0.7
    max_text_chars: int = 4000
    # Reports stamped further in the future than this are refused (clock errors).
    future_tolerance_s: float = 600.0
    # Address gazetteer; default: the city's `gazetteer.json` if it has one, else the demo's.
    gazetteer: Path | None = None
    # Extra labelled examples of the city (TSV `category<TAB>text`), added to the shipped set.
    training: Path | None = None
    # Keyword rules a city edits (JSON); default: the shipped rules.
    rules: Path = DATA / "rules.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "EventsSettings":
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f"CITYOS_EVENTS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name in ("gazetteer", "training", "rules"):
                values[f.name] = Path(raw)
            elif f.name == "max_text_chars":
                values[f.name] = int(raw)
            else:
                values[f.name] = float(raw)
        return cls(**(values | overrides))

    def gazetteer_path(self, city_dir: Path) -> Path:
        if self.gazetteer is not None:
            return self.gazetteer
        own = city_dir / "gazetteer.json"
        return own if own.exists() else DATA / "gazetteer.json"
