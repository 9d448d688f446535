"""The screens' view of every case, rebuilt from the case-event stream (a read model).

The big screen counts and draws cases many times a second across every client; asking the event
hub each time would load it for nothing. Every step of a case is on `cases.events.<id>` with
the status it leads to, so replaying the stream gives each case's status, category, place,
unit and step times; live events keep it current. Deadlines come from the category (as the
event hub sets them), counted from when the case was received.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from cityos_maps.themes import CaseFilter

CLOSED = frozenset({"closed", "merged", "rejected"})
# Done from the unit's side: the disposal deadline no longer runs.
DONE = frozenset({"handled", "verified", "closed"})


class EventPlace(msgspec.Struct, frozen=True):
    lon: float | None = None
    lat: float | None = None
    district: str | None = None
    street: str | None = None


class StreamEvent(msgspec.Struct, frozen=True):
    """The part of a `cityos.case_event.v1` the screens use. Kinds and statuses are plain
    strings: a step the event hub adds later must not stop the big screen."""

    case_id: int
    seq: int
    kind: str
    to_status: str
    at: datetime
    category: str | None = None
    unit: str | None = None
    other_case_id: int | None = None
    location: EventPlace | None = None


@dataclass
class CaseRow:
    case_id: int
    seq: int = 0
    status: str = "received"
    category: str | None = None
    lon: float | None = None
    lat: float | None = None
    district: str | None = None
    street: str | None = None
    unit: str | None = None
    received_at: datetime | None = None
    accepted_at: datetime | None = None
    dispatched_at: datetime | None = None
    handled_at: datetime | None = None
    closed_at: datetime | None = None
    updated_at: datetime | None = None
    merged_into: int | None = None

    @property
    def open(self) -> bool:
        return self.status not in CLOSED


@dataclass(frozen=True)
class CategoryInfo:
    code: str
    group: str
    name: str
    name_en: str
    accept_min: float
    dispose_h: float
    priority: str


def category_infos(categories: Iterable[dict[str, Any]]) -> dict[str, CategoryInfo]:
    return {c["code"]: CategoryInfo(c["code"], c["group"], c["name"], c.get("name_en", c["name"]),
                                    float(c["accept_within_minutes"]),
                                    float(c["dispose_within_hours"]), c.get("priority", "normal"))
            for c in categories}


class CaseBoard:
    def __init__(self, categories: dict[str, CategoryInfo]) -> None:
        self.categories = categories
        self.cases: dict[int, CaseRow] = {}
        self.events_applied = 0
        self.last_stream_seq = 0

    # -- applying events ---------------------------------------------------------------------
    def apply(self, event: StreamEvent) -> CaseRow | None:
        """Fold one event in; None when it was already applied (at-least-once delivery)."""
        row = self.cases.get(event.case_id)
        if row is None:
            row = self.cases[event.case_id] = CaseRow(event.case_id)
        elif event.seq <= row.seq:
            return None
        row.seq = event.seq
        row.status = event.to_status
        row.updated_at = event.at
        if event.location is not None:
            loc = event.location
            row.lon, row.lat = loc.lon, loc.lat
            row.district, row.street = loc.district, loc.street
        if event.category is not None:
            row.category = event.category
        if event.unit is not None:
            row.unit = event.unit
        kind = event.kind
        if kind in ("received", "split_from") and row.received_at is None:
            row.received_at = event.at
        elif kind == "accepted":
            row.accepted_at = event.at
        elif kind == "dispatched":
            row.dispatched_at = row.dispatched_at or event.at
        elif kind == "handled":
            row.handled_at = event.at
        elif kind == "closed":
            row.closed_at = event.at
        elif kind == "merged":
            row.merged_into = event.other_case_id
        elif kind in ("reopened", "reworked"):
            row.handled_at = row.closed_at = None
        self.events_applied += 1
        return row

    def prune(self, before: datetime) -> int:
        """Forget finished cases last changed before `before`: the screens show what is open
        and recent, and every figure stays a pass over a bounded set."""
        old = [c for c, row in self.cases.items() if not row.open and row.updated_at is not None
               and row.updated_at < before]
        for case_id in old:
            del self.cases[case_id]
        return len(old)

    # -- deadlines ----------------------------------------------------------------------------
    def dispose_due(self, row: CaseRow) -> datetime | None:
        info = self.categories.get(row.category or "")
        if info is None or row.received_at is None:
            return None
        return row.received_at + timedelta(hours=info.dispose_h)

    def overdue(self, row: CaseRow, now: datetime) -> bool:
        due = self.dispose_due(row)
        return due is not None and row.open and row.status not in DONE and now > due

    def on_time(self, row: CaseRow) -> bool | None:
        """Handled within the disposal deadline; None while not handled (or no deadline)."""
        due = self.dispose_due(row)
        done = row.handled_at or row.closed_at
        if due is None or done is None:
            return None
        return done <= due

    # -- selecting ---------------------------------------------------------------------------
    def select(self, where: CaseFilter | None, now: datetime, midnight: datetime
               ) -> Iterator[CaseRow]:
        for row in self.cases.values():
            if where is None or self.matches(row, where, now, midnight):
                yield row

    def matches(self, row: CaseRow, where: CaseFilter, now: datetime, midnight: datetime) -> bool:
        if where.open is not None and row.open != where.open:
            return False
        if where.statuses is not None and row.status not in where.statuses:
            return False
        if where.categories is not None and row.category not in where.categories:
            return False
        if where.groups is not None:
            info = self.categories.get(row.category or "")
            if info is None or info.group not in where.groups:
                return False
        if where.today is not None and \
                ((row.received_at is not None and row.received_at >= midnight) != where.today):
            return False
        return where.overdue is None or self.overdue(row, now) == where.overdue

    def group_of(self, row: CaseRow) -> str:
        info = self.categories.get(row.category or "")
        return info.group if info else "未分类"

    def count_by(self, rows: Iterable[CaseRow], key: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for row in rows:
            if key == "group":
                counts[self.group_of(row)] += 1
            else:
                counts[str(getattr(row, key) or "")] += 1
        return counts

    def view(self, row: CaseRow, now: datetime) -> dict[str, Any]:
        """What the map needs of a case (compact: sent for every open case)."""
        info = self.categories.get(row.category or "")
        due = self.dispose_due(row)
        return {"id": row.case_id, "status": row.status, "category": row.category,
                "group": info.group if info else None, "lon": row.lon, "lat": row.lat,
                "street": row.street, "unit": row.unit,
                "priority": info.priority if info else None,
                "due": due.isoformat() if due else None, "overdue": self.overdue(row, now),
                "received_at": row.received_at.isoformat() if row.received_at else None}
