"""The newest position of every live vehicle (or sensor), fed by the observation batches.

Ingestion publishes batches of thousands of fixes; the screens need one position per subject,
and only what changed since the last push. Positions are kept per subject, an older fix never
replaces a newer one (late or replayed batches), and the changes are taken in one go per push.
Sent columnar (parallel arrays), rounded to ~1 m: 5,000 vehicles are ~250 kB, their changes in
2 s a fifth of that.
"""

import time
from dataclasses import dataclass
from typing import Any

from cityos_contracts.records import ObservationBatch


@dataclass(slots=True)
class Position:
    dataset: str
    subject: str
    ts: float  # epoch seconds of the fix
    lon: float
    lat: float
    speed: float | None
    heading: float | None
    value: float | None
    seen: float  # monotonic time it arrived
    unit: str | None = None  # field staff: the unit the person works for


class Positions:
    def __init__(self, datasets: frozenset[str], max_age_s: float) -> None:
        self.datasets = datasets
        self.max_age_s = max_age_s
        self.rows: dict[tuple[str, str], Position] = {}
        self._changed: set[tuple[str, str]] = set()
        self.fixes_seen = 0

    def wants(self, dataset: str) -> bool:
        return "*" in self.datasets or dataset in self.datasets

    def apply(self, batch: ObservationBatch) -> int:
        """Keep each subject's newest fix; returns how many subjects moved."""
        now = time.monotonic()
        n = len(batch.subject)
        speeds = batch.speed_kmh if len(batch.speed_kmh) == n else [None] * n
        headings = batch.heading if len(batch.heading) == n else [None] * n
        values = batch.value if len(batch.value) == n else [None] * n
        moved = 0
        rows, dataset = self.rows, batch.dataset
        for i in range(n):
            key = (dataset, batch.subject[i])
            ts = batch.ts[i].timestamp()
            old = rows.get(key)
            if old is not None and old.ts >= ts:
                continue
            rows[key] = Position(dataset, key[1], ts, batch.lon[i], batch.lat[i], speeds[i],
                                 headings[i], values[i], now)
            self._changed.add(key)
            moved += 1
        self.fixes_seen += n
        return moved

    def expire(self) -> list[tuple[str, str]]:
        """Forget subjects silent for longer than the maximum age; returns their keys."""
        limit = time.monotonic() - self.max_age_s
        gone = [key for key, p in self.rows.items() if p.seen < limit]
        for key in gone:
            del self.rows[key]
            self._changed.discard(key)
        return gone

    def forget(self, key: tuple[str, str]) -> bool:
        self._changed.discard(key)
        return self.rows.pop(key, None) is not None

    def take_changes(self) -> list[Position]:
        changed = [self.rows[k] for k in self._changed if k in self.rows]
        self._changed.clear()
        return changed

    def all(self) -> list[Position]:
        return list(self.rows.values())

    def inside(self, contains: Any) -> list[Position]:
        """Positions for which `contains(lon, lat)` holds (box select without the database)."""
        return [p for p in self.rows.values() if contains(p.lon, p.lat)]


class StaffPositions(Positions):
    """Field staff on duty: positions that dispatch forwards (with the attributes `unit` and
    `on_duty`). A fix sent off duty takes the person off the map at once."""

    def __init__(self, datasets: frozenset[str], max_age_s: float) -> None:
        super().__init__(datasets, max_age_s)
        self._left: list[tuple[str, str]] = []

    def apply(self, batch: ObservationBatch) -> int:
        n = len(batch.subject)
        attrs = batch.attrs if len(batch.attrs) == n else [None] * n
        before = {batch.subject[i]: self.rows.get((batch.dataset, batch.subject[i]))
                  for i in range(n)}
        moved = super().apply(batch)
        for i in range(n):
            key = (batch.dataset, batch.subject[i])
            row = self.rows.get(key)
            if row is None or row is before[key[1]] or row.ts != batch.ts[i].timestamp():
                continue  # this fix was older than the one kept
            extra = attrs[i] or {}
            if extra.get("on_duty") is False:
                if self.forget(key):
                    self._left.append(key)
                continue
            row.unit = str(extra["unit"]) if extra.get("unit") else None
        return moved

    def expire(self) -> list[tuple[str, str]]:
        left, self._left = self._left, []
        return left + super().expire()


def columns(positions: list[Position], gone: list[tuple[str, str]] | None = None,
            full: bool = False) -> dict[str, Any]:
    """The wire form: parallel arrays, datasets by index."""
    datasets: dict[str, int] = {}
    ds = []
    for p in positions:
        ds.append(datasets.setdefault(p.dataset, len(datasets)))
    return {
        "full": full,
        "datasets": list(datasets),
        "d": ds,
        "id": [p.subject for p in positions],
        "x": [round(p.lon, 5) for p in positions],
        "y": [round(p.lat, 5) for p in positions],
        "v": [None if p.speed is None else round(p.speed, 1) for p in positions],
        "h": [None if p.heading is None else round(p.heading) for p in positions],
        "val": [None if p.value is None else round(p.value, 2) for p in positions],
        "t": [int(p.ts) for p in positions],
        "gone": [f"{d}/{s}" for d, s in gone or []],
    } | ({"u": [p.unit for p in positions]} if any(p.unit for p in positions) else {})
