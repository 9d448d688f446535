"""The event hub's SQL: cases, reports, contacts and case events.

Every change to a case happens in one transaction that locks the case row (`FOR UPDATE`, or
the row lock an `UPDATE` takes), bumps its `version` and appends the matching events with
`seq` = the new version: two concurrent changes serialise, neither is lost, and the history
has no gaps. Intake also takes advisory locks on the coarse cells around the report, so two
reports of one new incident arriving together cannot both open a case.
"""

import base64
import itertools
import json
import math
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from cityos_contracts.cases import (
    Case,
    CaseEvent,
    Classification,
    Location,
    MaskedContact,
    Report,
    ReporterContact,
    ReporterOfReport,
)
from cityos_events.lifecycle import FINAL_STATUSES, OPEN_STATUSES, next_status
from cityos_events.location import coarse_cell, neighbour_cells
from cityos_events.merge import Candidate, Sighting, probabilities
from cityos_events.privacy import mask
from cityos_kit import db

# Gazetteer hits coarser than this (a whole street) place a report too vaguely to merge on.
MERGEABLE_PRECISION_M = 1000.0
# The reports of a case are kept in memory per version of the case while it has at most this
# many (a city's recurring warning can gather thousands; those are read near the report only),
# for at most this many cases (a few days' cases of a big city).
SIGHTINGS_KEPT = 50
SIGHTINGS_CACHED = 100_000
COMMAND_CENTER = "CMD"
_encode = msgspec.json.encode
_decode_location = msgspec.json.Decoder(Location).decode
_decode_classification = msgspec.json.Decoder(Classification).decode
_FINAL = sorted(FINAL_STATUSES)
_INTAKE_REPORT = "SELECT * FROM intake_report(" + ", ".join(f"${i}" for i in range(1, 42)) + ")"


@dataclass(frozen=True)
class Actor:
    sub: str
    unit: str


INTAKE = Actor("system:intake", COMMAND_CENTER)


@dataclass(frozen=True)
class CategoryInfo:
    code: str
    name: str
    group: str
    department: str
    handling_level: str
    priority: str
    accept_within_minutes: int
    dispose_within_hours: int


@dataclass(frozen=True)
class NewReport:
    channel: str
    text: str
    reported_at: datetime
    location: Location
    classification: Classification
    confident: bool  # the classification may set the case's category
    media: list[str]
    category_hint: str | None
    source_ref: str | None
    idempotency_key: str | None
    payload_hash: str
    contact: ReporterContact | None
    bigrams: list[str]


@dataclass(frozen=True)
class IntakeResult:
    report_id: int
    case_id: int
    status: str
    merged: bool
    events: list[CaseEvent]


@dataclass(frozen=True)
class Filters:
    statuses: Sequence[str] = ()
    category: str | None = None
    division: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    bigrams: Sequence[str] = ()
    within: str | None = None  # GeoJSON geometry
    unit: str | None = None  # restrict to cases this unit (or department) handles
    department_unit: bool = False  # `unit` is a department's city unit: its branches too
    street: str | None = None  # `unit` is this street's office: every case in the street too
    limit: int = 50
    cursor: str | None = None


class Conflict(Exception):
    """The case changed since the caller read it (expected_version), or cannot take this."""


class NotFound(Exception):
    pass


def new_event(case_id: int, seq: int, kind: str, to_status: str, actor: Actor, *,
              from_status: str | None = None, **fields: Any) -> CaseEvent:
    return CaseEvent(event_id=uuid.uuid4().hex, case_id=case_id, seq=seq, kind=kind,  # type: ignore[arg-type]
                     to_status=to_status, actor=actor.sub, actor_unit=actor.unit,  # type: ignore[arg-type]
                     at=datetime.now(UTC), from_status=from_status, **fields)  # type: ignore[arg-type]


def encode_cursor(at: datetime, case_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{case_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        at, case_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), int(case_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc


def _sighting_of(row: asyncpg.Record, confident_at: float) -> Sighting:
    """A stored report as the merger sees it (lon/lat NaN when it has no point)."""
    location = _decode_location(row["location"])
    found = _decode_classification(row["classification"])
    return Sighting(row["text"], location.lon if location.lon is not None else math.nan,
                    location.lat if location.lat is not None else math.nan,
                    location.precision_m or 0.0, row["reported_at"], row["channel"],
                    found.category if found.confidence >= confident_at else None,
                    probabilities(found))


def _sighting(report: NewReport) -> Sighting:
    """A mergeable report as the merger sees it."""
    loc = report.location
    assert loc.lon is not None and loc.lat is not None
    return Sighting(report.text, loc.lon, loc.lat, loc.precision_m or 0.0, report.reported_at,
                    report.channel,
                    report.classification.category if report.confident else None,
                    probabilities(report.classification))


class CaseStore:
    def __init__(self, pool: asyncpg.Pool, categories: dict[str, CategoryInfo]) -> None:
        self.pool = pool
        self.categories = categories
        self._sightings_cache: OrderedDict[tuple[int, int], tuple[Sighting, ...]] = \
            OrderedDict()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    # -- intake ---------------------------------------------------------------------------

    async def by_key(self, channel: str, key: str) -> tuple[int, str] | None:
        """(report id, payload hash) of the report sent before with this idempotency key."""
        row = await self.pool.fetchrow(
            "SELECT report_id, payload_hash FROM reports WHERE channel = $1"
            " AND idempotency_key = $2", channel, key)
        return None if row is None else (row["report_id"], row["payload_hash"])

    async def take_in(self, report: NewReport, search_radius_m: float, window: timedelta,
                      closed_window: timedelta, confident_at: float,
                      choose: Callable[[Sighting, list[Candidate]], int | None]) -> IntakeResult:
        """Store a report: into the case `choose` picks among the candidates, or a new case.

        The candidates are read and chosen among without locks; the write (intake_report,
        migration 002) takes the cells' locks and goes ahead only if the candidates are still
        as read, so concurrent reports of other places never wait on each other. If they
        changed, the choice is made again holding the locks."""
        loc = report.location
        mergeable = loc.lon is not None and loc.lat is not None and \
            (loc.precision_m or 0) <= MERGEABLE_PRECISION_M
        if report.source_ref is not None:
            async with self._transaction() as conn:
                target = await self._open_case_of(conn, report)
                if target is not None or not mergeable:
                    joined = await self._write(conn, report, target, None, {}, window,
                                               closed_window, mergeable)
                    assert joined is not None
                    return joined
                return await self._take_in_locked(conn, report, search_radius_m, window,
                                                  closed_window, confident_at, choose)
        async with self.pool.acquire() as conn:
            if not mergeable:  # no candidates, no locks
                opened = await self._write(conn, report, None, None, {}, window, closed_window,
                                           mergeable)
                assert opened is not None
                return opened
            assert loc.lon is not None and loc.lat is not None
            cells = neighbour_cells(loc.lon, loc.lat, search_radius_m)
            candidates, seen = await self._candidates(conn, cells, report, search_radius_m,
                                                      window, closed_window, confident_at)
            target = choose(_sighting(report), candidates) if candidates else None
            result = await self._write(conn, report, target, cells, seen, window,
                                       closed_window, mergeable)
            if result is not None:
                return result
            async with conn.transaction():
                return await self._take_in_locked(conn, report, search_radius_m, window,
                                                  closed_window, confident_at, choose)

    async def _take_in_locked(self, conn: asyncpg.Connection, report: NewReport,
                              search_radius_m: float, window: timedelta,
                              closed_window: timedelta, confident_at: float,
                              choose: Callable[[Sighting, list[Candidate]], int | None]
                              ) -> IntakeResult:
        """Take in a mergeable report holding its cells' locks to the end of the transaction
        `conn` is in: nothing can change among its candidates meanwhile."""
        loc = report.location
        assert loc.lon is not None and loc.lat is not None
        cells = neighbour_cells(loc.lon, loc.lat, search_radius_m)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(c) FROM unnest($1::bigint[]) AS c ORDER BY c", cells)
        candidates, _ = await self._candidates(conn, cells, report, search_radius_m, window,
                                               closed_window, confident_at)
        target = choose(_sighting(report), candidates) if candidates else None
        result = await self._write(conn, report, target, None, {}, window, closed_window, True)
        assert result is not None
        return result

    async def _open_case_of(self, conn: asyncpg.Connection, report: NewReport) -> int | None:
        """The open case that already has a report of this channel and `source_ref` (a system's
        recurring warning, a hotline's ticket): the report joins it wherever and whenever it
        comes; a closed case is not joined. The (channel, source_ref) stays locked to the end of
        the transaction, so recurrences racing in open one case between them."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
                           report.channel, report.source_ref)
        with db.span("select", "reports"):
            found: int | None = await conn.fetchval(
                "SELECT r.case_id FROM reports r JOIN cases c ON c.case_id = r.case_id"
                " WHERE r.channel = $1 AND r.source_ref = $2 AND c.status = ANY($3::text[])"
                " ORDER BY r.reported_at DESC LIMIT 1",
                report.channel, report.source_ref, sorted(OPEN_STATUSES))
        return found

    async def _candidates(self, conn: asyncpg.Connection, cells: list[int], report: NewReport,
                          search_radius_m: float, window: timedelta, closed_window: timedelta,
                          confident_at: float) -> tuple[list[Candidate], dict[int, int]]:
        """The cases the report could join, and the version of every case of its cells that
        is active at its time (what `intake_report` checks).

        Only their reports the merger could pair it with come along: within the time window,
        and within a box around it as wide as the merge radius and both reports' imprecision
        can reach (`search_radius_m` less the precision it does not have), the ten nearest in
        time. A case's reports are read once per version of the case (`_sightings`): every
        change to them bumps it, and around a report most cases have not changed since the
        last report nearby, so reading them each time cost most of intake's database time."""
        loc = report.location
        assert loc.lon is not None and loc.lat is not None
        reach = search_radius_m - MERGEABLE_PRECISION_M + (loc.precision_m or 0.0)
        # Degrees surely covering `reach` metres on the merger's sphere (111.2 km to a degree
        # of latitude, that times the cosine to one of longitude), 5% to spare.
        dlat = reach / 111_000 * 1.05
        dlon = dlat / math.cos(math.radians(min(abs(loc.lat) + dlat, 89.0)))
        at = report.reported_at
        with db.span("select", "cases"):
            rows = await conn.fetch(
                "SELECT case_id, version, category, closed_at, report_count FROM cases"
                " WHERE cell = ANY($1::bigint[]) AND last_reported_at >= $2::timestamptz"
                " - $3::interval AND first_reported_at <= $2 + $3::interval"
                " AND status <> ALL($4::text[])"
                " AND (closed_at IS NULL OR closed_at >= $2 - $5::interval)",
                cells, at, window, _FINAL, closed_window)
        seen = {r["case_id"]: r["version"] for r in rows}
        cached = await self._sightings(conn, rows, confident_at)
        big = [r["case_id"] for r in rows if r["case_id"] not in cached]
        if big:  # too many reports to keep: only those near in time and place
            with db.span("select", "reports"):
                found = await conn.fetch(
                    "SELECT c.case_id, s.* FROM unnest($1::bigint[]) AS c(case_id)"
                    " CROSS JOIN LATERAL (SELECT r.text, r.location, r.reported_at, r.channel,"
                    "   r.classification FROM reports r WHERE r.case_id = c.case_id"
                    "   AND r.reported_at >= $2::timestamptz - $3::interval"
                    "   AND r.reported_at <= $2 + $3::interval"
                    "   AND abs((r.location ->> 'lon')::float8 - $4) <= $5"
                    "   AND abs((r.location ->> 'lat')::float8 - $6) <= $7"
                    "   ORDER BY abs(extract(epoch FROM r.reported_at - $2)) LIMIT 10) s",
                    big, at, window, loc.lon, dlon, loc.lat, dlat)
            for case_id, group in itertools.groupby(found, key=lambda r: r["case_id"]):
                cached[case_id] = tuple(_sighting_of(r, confident_at) for r in group)
        result = []
        for r in rows:
            near = [s for s in cached.get(r["case_id"], ())
                    if abs(s.reported_at - at) <= window and abs(s.lon - loc.lon) <= dlon
                    and abs(s.lat - loc.lat) <= dlat]
            if len(near) > 10:
                near = sorted(near, key=lambda s: abs(s.reported_at - at))[:10]
            sightings = tuple(s for s in near if s.precision_m <= MERGEABLE_PRECISION_M)
            if not sightings:
                continue
            info = self.categories.get(r["category"]) if r["category"] else None
            result.append(Candidate(r["case_id"], r["category"], (info.group,) if info else (),
                                    r["closed_at"], sightings))
        return result, seen

    async def _sightings(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record],
                         confident_at: float) -> dict[int, tuple[Sighting, ...]]:
        """Every report of these cases (those with at most SIGHTINGS_KEPT), from the cache of
        (case id, version) or read now; a case with more is left out."""
        found: dict[int, tuple[Sighting, ...]] = {}
        missing: dict[int, int] = {}
        cache = self._sightings_cache
        for r in rows:
            key = (r["case_id"], r["version"])
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                found[key[0]] = hit
            elif r["report_count"] <= SIGHTINGS_KEPT:
                missing[key[0]] = key[1]
        if missing:
            with db.span("select", "reports"):
                read = await conn.fetch(
                    "SELECT case_id, text, location, reported_at, channel, classification"
                    " FROM reports WHERE case_id = ANY($1::bigint[]) ORDER BY case_id",
                    list(missing))
            got = {case_id: tuple(_sighting_of(r, confident_at) for r in group)
                   for case_id, group in itertools.groupby(read, key=lambda r: r["case_id"])}
            for case_id, version in missing.items():
                # Read outside the write's transaction, the reports may be newer than the
                # version: harmless, the write's check sees the version move and we read again.
                found[case_id] = cache[(case_id, version)] = got.get(case_id, ())
            while len(cache) > SIGHTINGS_CACHED:
                cache.popitem(last=False)
        return found

    async def _write(self, conn: asyncpg.Connection, report: NewReport, target: int | None,
                     cells: list[int] | None, seen: dict[int, int], window: timedelta,
                     closed_window: timedelta, mergeable: bool) -> IntakeResult | None:
        """The report into case `target` (None: a new case) in one statement; None if `cells`
        were given and their candidates are no longer `seen`."""
        loc, c = report.location, report.classification
        info = self.categories.get(c.category or "") if report.confident else None
        contact = report.contact
        has_contact = contact is not None and any(
            (contact.name, contact.phone, contact.email, contact.account))
        # The events' templates: the statement fills in ids, seq and statuses.
        first = new_event(0, 1, "received", "received", INTAKE, unit=COMMAND_CENTER,
                          location=loc) if target is None else \
            new_event(target, 0, "report_added", "received", INTAKE,
                      reason="same incident (text, place, time, category)")
        classified = new_event(0, 0, "classified", "classified", INTAKE,
                               from_status="received", category=c.category,
                               confidence=c.confidence, classified_by=c.method,
                               reason=f"rule {c.rule}" if c.rule else f"{c.method} confidence") \
            if info else None
        template = _encode(first).decode()
        ids = sorted(seen)
        with db.span("insert", "reports"):
            row = await conn.fetchrow(
                _INTAKE_REPORT,
                cells, ids, [seen[i] for i in ids], window, closed_window, _FINAL, target,
                report.channel, report.text, report.reported_at, _encode(loc).decode(),
                _encode(c).decode(), _encode(report.media).decode(), report.category_hint,
                report.source_ref, report.idempotency_key, report.payload_hash, report.bigrams,
                has_contact, contact.name if has_contact and contact else None,
                contact.phone if has_contact and contact else None,
                contact.email if has_contact and contact else None,
                contact.account if has_contact and contact else None,
                info.code if info else None, c.confidence if info else None,
                c.method if info else None, info.department if info else None,
                info.priority if info else None,
                info.accept_within_minutes if info else None,
                info.dispose_within_hours if info else None,
                report.text[:120], info is None or loc.street is None, COMMAND_CENTER,
                loc.district, loc.street, loc.lon, loc.lat,
                coarse_cell(loc.lon, loc.lat) if mergeable and loc.lon is not None
                and loc.lat is not None else None,
                template if target is None else None, template if target is not None else None,
                _encode(classified).decode() if classified else None)
        if row["stale"]:
            return None
        case_id, report_id = row["case_id"], row["report_id"]
        replace = msgspec.structs.replace
        if target is None:
            events = [replace(first, case_id=case_id, report_id=report_id)]
        else:
            prev = row["prev_status"]
            events = [replace(first, seq=row["prev_version"] + 1, report_id=report_id,
                              from_status=prev, to_status=prev)]
        if row["classified"]:
            assert classified is not None
            events.append(replace(classified, case_id=case_id, seq=events[0].seq + 1,
                                  from_status=events[0].to_status))
        return IntakeResult(report_id, case_id, row["status"], target is not None, events)

    async def _set_category(self, conn: asyncpg.Connection, case_id: int,
                            classification: Classification, status: str) -> None:
        info = self.categories[classification.category or ""]
        await conn.execute(
            "UPDATE cases SET status = $2, category = $3, confidence = $4, classified_by = $5,"
            " department = $6, priority = $7,"
            " accept_due = first_reported_at + make_interval(mins => $8),"
            " dispose_due = first_reported_at + make_interval(hours => $9),"
            " needs_operator = street IS NULL, updated_at = now() WHERE case_id = $1",
            case_id, status, info.code, classification.confidence, classification.method,
            info.department, info.priority, info.accept_within_minutes,
            info.dispose_within_hours)

    async def _append(self, conn: asyncpg.Connection, events: Sequence[CaseEvent]) -> None:
        with db.span("insert", "case_events"):  # one round trip for the lot
            await conn.execute(
                "INSERT INTO case_events (case_id, seq, kind, at, event)"
                " SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[],"
                " $5::jsonb[])",
                [e.case_id for e in events], [e.seq for e in events], [e.kind for e in events],
                [e.at for e in events], [_encode(e).decode() for e in events])

    # -- actions --------------------------------------------------------------------------

    async def _lock(self, conn: asyncpg.Connection, case_id: int,
                    expected_version: int | None) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
        if row is None:
            raise NotFound(f"no case {case_id}")
        if expected_version is not None and row["version"] != expected_version:
            raise Conflict(f"case {case_id} is at version {row['version']}, "
                           f"not {expected_version}: read it again")
        return row

    async def act(self, case_id: int, action: str, actor: Actor, reason: str,
                  expected_version: int | None, *, classification: Classification | None = None,
                  unit: str | None = None) -> list[CaseEvent]:
        """Apply one lifecycle action (lifecycle.TRANSITIONS) to a case."""
        async with self._transaction() as conn:
            row = await self._lock(conn, case_id, expected_version)
            current = row["status"]
            status = next_status(action, current)
            if action == "accept" and row["category"] is None:
                raise Conflict(f"case {case_id} has no category: classify it first")
            version = row["version"] + 1
            fields: dict[str, Any] = {}
            sets = ["status = $2", "version = $3", "updated_at = now()"]
            args: list[Any] = [case_id, status, version]
            if action == "classify":
                assert classification is not None
                await self._set_category(conn, case_id, classification, status)
                fields = {"category": classification.category,
                          "confidence": classification.confidence,
                          "classified_by": classification.method}
            if action == "dispatch":
                fields["unit"] = unit
                args.append(unit)
                sets.append(f"handling_unit = ${len(args)}")
            if action in ("return", "reopen"):
                fields["unit"] = COMMAND_CENTER
                args.append(COMMAND_CENTER)
                sets.append(f"handling_unit = ${len(args)}")
            if action == "close":
                sets.append("closed_at = now()")
            if action == "reopen":
                sets.append("closed_at = NULL")
            await conn.execute(f"UPDATE cases SET {', '.join(sets)} WHERE case_id = $1", *args)
            kind = "classified" if action == "classify" else _KINDS[action]
            event = new_event(case_id, version, kind, status, actor, from_status=current,
                              reason=reason, **fields)
            await self._append(conn, [event])
            return [event]

    async def merge(self, source: int, target: int, actor: Actor, reason: str,
                    expected_version: int | None) -> list[CaseEvent]:
        """Merge case `source` into `target`: its reports move, it becomes `merged`."""
        if source == target:
            raise Conflict("a case cannot be merged into itself")
        async with self._transaction() as conn:
            # Lock both in id order: two opposite merges cannot deadlock.
            rows = {}
            for case_id in sorted((source, target)):
                rows[case_id] = await self._lock(
                    conn, case_id, expected_version if case_id == source else None)
            if rows[target]["status"] in FINAL_STATUSES:
                raise Conflict(f"case {target} is {rows[target]['status']}: it takes no reports")
            from_status = rows[source]["status"]
            next_status("merge", from_status)
            moved = [r["report_id"] for r in await conn.fetch(
                "UPDATE reports SET case_id = $2 WHERE case_id = $1 RETURNING report_id",
                source, target)]
            await conn.execute(
                "UPDATE cases SET status = 'merged', merged_into = $2, version = version + 1,"
                " report_count = 0, updated_at = now() WHERE case_id = $1", source, target)
            await conn.execute("UPDATE cases SET version = version + 1 WHERE case_id = $1",
                               target)
            await self._recount(conn, target)
            events = [
                new_event(source, rows[source]["version"] + 1, "merged", "merged", actor,
                          from_status=from_status, reason=reason, other_case_id=target,
                          report_ids=sorted(moved)),
                new_event(target, rows[target]["version"] + 1, "reports_merged_in",
                          rows[target]["status"], actor, from_status=rows[target]["status"],
                          reason=reason, other_case_id=source, report_ids=sorted(moved)),
            ]
            await self._append(conn, events)
            return events

    async def split(self, case_id: int, report_ids: Sequence[int], actor: Actor, reason: str,
                    expected_version: int | None) -> tuple[int, list[CaseEvent]]:
        """Move some reports of a case into a new case; returns the new case's id."""
        async with self._transaction() as conn:
            row = await self._lock(conn, case_id, expected_version)
            if row["status"] in FINAL_STATUSES:
                raise Conflict(f"case {case_id} is {row['status']}")
            reports = await conn.fetch(
                "SELECT report_id, channel, text, reported_at, location, classification"
                " FROM reports WHERE case_id = $1 ORDER BY reported_at, report_id", case_id)
            owned = {r["report_id"] for r in reports}
            chosen = set(report_ids)
            if not chosen or not chosen <= owned:
                raise Conflict(f"reports {sorted(chosen - owned)} are not in case {case_id}")
            if chosen == owned:
                raise Conflict("splitting out every report would leave the case empty")
            first = next(r for r in reports if r["report_id"] in chosen)
            location = msgspec.json.decode(first["location"], type=Location)
            classification = msgspec.json.decode(first["classification"], type=Classification)
            info = self.categories.get(row["category"] or "") or \
                self.categories.get(classification.category or "")
            status = "classified" if info else "received"
            cell = coarse_cell(location.lon, location.lat) if location.lon is not None and \
                location.lat is not None and (location.precision_m or 0) <= \
                MERGEABLE_PRECISION_M else None
            new_id: int = await conn.fetchval(
                "INSERT INTO cases (status, version, title, category, confidence, classified_by,"
                " needs_operator, department, handling_unit, priority, location, district,"
                " street, geom, cell, first_reported_at, last_reported_at)"
                " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12,"
                " CASE WHEN $13::float8 IS NULL THEN NULL"
                "      ELSE ST_SetSRID(ST_MakePoint($13, $14), 4326) END, $15, $16, $16)"
                " RETURNING case_id",
                status, first["text"][:120], info.code if info else None,
                row["confidence"] if info else None, "operator" if info else None,
                info is None, info.department if info else None, COMMAND_CENTER,
                info.priority if info else None, first["location"], location.district,
                location.street, location.lon, location.lat, cell, first["reported_at"])
            await conn.execute("UPDATE reports SET case_id = $2 WHERE report_id = ANY($1)",
                               sorted(chosen), new_id)
            await conn.execute("UPDATE cases SET version = version + 1 WHERE case_id = $1",
                               case_id)
            await self._recount(conn, case_id)
            await self._recount(conn, new_id)
            moved = sorted(chosen)
            events = [
                new_event(case_id, row["version"] + 1, "split", row["status"], actor,
                          from_status=row["status"], reason=reason, other_case_id=new_id,
                          report_ids=moved),
                new_event(new_id, 1, "split_from", status, actor, reason=reason,
                          other_case_id=case_id, report_ids=moved, unit=COMMAND_CENTER,
                          category=info.code if info else None,
                          classified_by="operator" if info else None, location=location),
            ]
            await self._append(conn, events)
            return new_id, events

    async def _recount(self, conn: asyncpg.Connection, case_id: int) -> None:
        await conn.execute(
            "UPDATE cases c SET report_count = s.n, first_reported_at = s.first,"
            " last_reported_at = s.last, channels = s.channels, updated_at = now()"
            " FROM (SELECT count(*) AS n, min(reported_at) AS first, max(reported_at) AS last,"
            "       array_agg(DISTINCT channel) AS channels FROM reports WHERE case_id = $1) s"
            " WHERE c.case_id = $1 AND s.n > 0", case_id)

    # -- reads ----------------------------------------------------------------------------

    async def case(self, case_id: int) -> Case | None:
        row = await self.pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
        return None if row is None else self.to_case(row)

    async def reports(self, case_id: int) -> list[Report]:
        rows = await self.pool.fetch(
            "SELECT r.*, c.name AS c_name, c.phone AS c_phone, c.email AS c_email,"
            " c.account AS c_account, c.report_id IS NOT NULL AS has_contact"
            " FROM reports r LEFT JOIN reporter_contacts c USING (report_id)"
            " WHERE r.case_id = $1 ORDER BY r.reported_at, r.report_id", case_id)
        return [to_report(r) for r in rows]

    async def report(self, report_id: int) -> Report | None:
        row = await self.pool.fetchrow(
            "SELECT r.*, c.name AS c_name, c.phone AS c_phone, c.email AS c_email,"
            " c.account AS c_account, c.report_id IS NOT NULL AS has_contact"
            " FROM reports r LEFT JOIN reporter_contacts c USING (report_id)"
            " WHERE r.report_id = $1", report_id)
        return None if row is None else to_report(row)

    async def contacts(self, case_id: int) -> list[ReporterOfReport]:
        rows = await self.pool.fetch(
            "SELECT r.report_id, r.channel, r.reported_at, c.name, c.phone, c.email, c.account"
            " FROM reports r JOIN reporter_contacts c USING (report_id) WHERE r.case_id = $1"
            " ORDER BY r.reported_at", case_id)
        return [ReporterOfReport(r["report_id"], r["channel"], r["reported_at"], ReporterContact(
            name=r["name"], phone=r["phone"], email=r["email"], account=r["account"]))
            for r in rows]

    async def history(self, case_id: int) -> list[CaseEvent]:
        rows = await self.pool.fetch(
            "SELECT event FROM case_events WHERE case_id = $1 ORDER BY seq", case_id)
        return [msgspec.json.decode(r["event"], type=CaseEvent) for r in rows]

    async def unpublished(self, older_than: timedelta, limit: int = 500) -> list[CaseEvent]:
        rows = await self.pool.fetch(
            "SELECT event FROM case_events WHERE NOT published AND at < now() - $1::interval"
            " ORDER BY case_id, seq LIMIT $2", older_than, limit)
        return [msgspec.json.decode(r["event"], type=CaseEvent) for r in rows]

    async def mark_published(self, keys: Sequence[tuple[int, int]]) -> None:
        """Mark (case id, seq) pairs as on NATS."""
        if keys:
            await self.pool.execute(
                "UPDATE case_events SET published = true FROM unnest($1::bigint[], $2::int[])"
                " AS p(case_id, seq) WHERE case_events.case_id = p.case_id"
                " AND case_events.seq = p.seq", [k[0] for k in keys], [k[1] for k in keys])

    async def search(self, f: Filters) -> tuple[list[Case], str | None]:
        where, args = [], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if f.statuses:
            where.append(f"status = ANY({arg(list(f.statuses))}::text[])")
        if f.category:
            where.append(f"category = {arg(f.category)}")
        if f.division:
            column = "district" if len(f.division) == 6 else "street"
            where.append(f"{column} = {arg(f.division)}")
        if f.start:
            where.append(f"last_reported_at >= {arg(f.start)}")
        if f.end:
            where.append(f"first_reported_at < {arg(f.end)}")
        if f.bigrams:
            where.append(f"case_id IN (SELECT case_id FROM reports WHERE bigrams @> "
                         f"{arg(list(f.bigrams))}::text[])")
        if f.within:
            where.append(f"ST_Intersects(geom, ST_SetSRID(ST_GeomFromGeoJSON({arg(f.within)}),"
                         f" 4326))")
        if f.unit:
            mine = [f"handling_unit = {arg(f.unit)}"]
            if f.department_unit:
                mine.append(f"handling_unit LIKE {arg(f.unit + '-%')}")
            if f.street:
                mine.append(f"street = {arg(f.street)}")
            where.append("(" + " OR ".join(mine) + ")")
        if f.cursor:
            at, case_id = decode_cursor(f.cursor)
            where.append(f"(first_reported_at, case_id) < ({arg(at)}, {arg(case_id)})")
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "") + \
            f" ORDER BY first_reported_at DESC, case_id DESC LIMIT {arg(f.limit + 1)}"
        with db.span("select", "cases"):
            rows = await self.pool.fetch(sql, *args)
        cases = [self.to_case(r) for r in rows[:f.limit]]
        more = len(rows) > f.limit
        cursor = encode_cursor(cases[-1].first_reported_at, cases[-1].case_id) \
            if more and cases else None
        return cases, cursor

    async def reports_with_cases(
            self, report_ids: Sequence[int] = (), category: str | None = None,
            start: datetime | None = None, end: datetime | None = None,
            closed: bool | None = None, limit: int = 1000) -> list[tuple[Report, Case]]:
        """Reports (newest first) with the case each now belongs to (Open311's requests)."""
        where, args = [], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if report_ids:
            where.append(f"r.report_id = ANY({arg(list(report_ids))}::bigint[])")
        if category:
            where.append(f"coalesce(k.category, r.category_hint) = {arg(category)}")
        if start:
            where.append(f"r.reported_at >= {arg(start)}")
        if end:
            where.append(f"r.reported_at < {arg(end)}")
        if closed is not None:
            where.append(("" if closed else "NOT ") + "(k.status IN ('closed', 'rejected'))")
        rows = await self.pool.fetch(
            "SELECT r.*, false AS has_contact, NULL AS c_name, NULL AS c_phone,"
            " NULL AS c_email, NULL AS c_account, to_jsonb(k) AS k"
            " FROM reports r JOIN cases k ON k.case_id = r.case_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY r.reported_at DESC, r.report_id DESC LIMIT {arg(limit)}", *args)
        return [(to_report(r), self.to_case(_case_row(json.loads(r["k"])))) for r in rows]

    def to_case(self, row: Any) -> Case:
        info = self.categories.get(row["category"]) if row["category"] else None
        return Case(
            case_id=row["case_id"], status=row["status"], version=row["version"],
            title=row["title"], location=msgspec.json.decode(row["location"], type=Location),
            first_reported_at=row["first_reported_at"], last_reported_at=row["last_reported_at"],
            report_count=row["report_count"], channels=list(row["channels"]),
            created_at=row["created_at"], updated_at=row["updated_at"],
            needs_operator=row["needs_operator"], category=row["category"],
            category_name=info.name if info else None, confidence=row["confidence"],
            classified_by=row["classified_by"], department=row["department"],
            handling_unit=row["handling_unit"], priority=row["priority"],
            accept_due=row["accept_due"], dispose_due=row["dispose_due"],
            closed_at=row["closed_at"], merged_into=row["merged_into"])


def _case_row(values: dict[str, Any]) -> dict[str, Any]:
    """A case row read back from `to_jsonb`: times parsed, JSON columns as text."""
    for key in ("first_reported_at", "last_reported_at", "created_at", "updated_at",
                "accept_due", "dispose_due", "closed_at"):
        if values.get(key) is not None:
            values[key] = datetime.fromisoformat(values[key])
    values["location"] = json.dumps(values["location"])
    return values


_KINDS = {"accept": "accepted", "reject": "rejected", "dispatch": "dispatched",
          "start": "started", "return": "returned", "finish": "handled", "verify": "verified",
          "rework": "reworked", "close": "closed", "reopen": "reopened",
          "escalate": "escalated", "note": "noted"}


def to_report(row: asyncpg.Record) -> Report:
    contact = None
    if row["has_contact"]:
        contact = MaskedContact(name=mask(row["c_name"], "name"),
                                phone=mask(row["c_phone"], "phone"),
                                email=mask(row["c_email"], "email"),
                                account=mask(row["c_account"], "account"))
    return Report(
        report_id=row["report_id"], case_id=row["case_id"], channel=row["channel"],
        text=row["text"], reported_at=row["reported_at"], received_at=row["received_at"],
        location=msgspec.json.decode(row["location"], type=Location),
        classification=msgspec.json.decode(row["classification"], type=Classification),
        media=msgspec.json.decode(row["media"]), category_hint=row["category_hint"],
        source_ref=row["source_ref"], reporter=contact)
