"""Dispatch's SQL: rules, the case projection, assignments, timers, escalations, staff, tasks,
feedback and emergencies. Functions that must share a transaction take the connection."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import (
    Any,
    Literal,
    TypeAlias,
)

import asyncpg
import msgspec

from cityos_contracts.cases import CaseEvent
from cityos_contracts.dispatch import (
    Assignment,
    Emergency,
    Escalation,
    FeedbackRecord,
    Rule,
    RuleIn,
    StaffMember,
    Task,
)
from cityos_kit import db

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def to_rule(row: Any) -> Rule:
    versioned = "at" in row.keys()  # a rule_versions row
    return Rule(rule_id=row["rule_id"], version=row["version"],
                rule=msgspec.json.decode(row["body"], type=RuleIn),
                updated_at=row["at"] if versioned else row["updated_at"],
                updated_by=row["by"] if versioned else row["updated_by"])


_ASSIGNMENT = (
    "SELECT a.*, c.category, c.title, c.lon, c.lat, c.district, c.street"
    " FROM assignments a LEFT JOIN cases c USING (case_id)")


def to_assignment(row: Any) -> Assignment:
    return Assignment(
        case_id=row["case_id"], round_seq=row["round_seq"], lead=row["lead"],
        assisting=list(row["assisting"]), priority=row["priority"], state=row["state"],
        dispatched_at=row["dispatched_at"], accept_due=row["accept_due"],
        dispose_due=row["dispose_due"], category=row["category"], title=row["title"] or "",
        lon=row["lon"], lat=row["lat"], district=row["district"], street=row["street"],
        rule_id=row["rule_id"], rule_version=row["rule_version"],
        emergency_id=row["emergency_id"], accepted_at=row["accepted_at"],
        handled_at=row["handled_at"], staff_id=row["staff_id"], escalations=row["escalations"],
        extension_pending_h=row["extension_pending_h"], evidence=list(row["evidence"]))


def to_staff(row: Any) -> StaffMember:
    return StaffMember(staff_id=row["staff_id"], unit=row["unit"], on_duty=row["on_duty"],
                       name=row["name"], lon=row["lon"], lat=row["lat"],
                       position_at=row["position_at"], open_tasks=row["open_tasks"])


def to_task(row: Any) -> Task:
    return Task(task_id=row["task_id"], staff_id=row["staff_id"], unit=row["unit"],
                state=row["state"], assigned_at=row["assigned_at"], case_id=row["case_id"],
                emergency_id=row["emergency_id"], text=row["text"], lon=row["lon"],
                lat=row["lat"], distance_m=row["distance_m"], accept_due=row["accept_due"],
                dispose_due=row["dispose_due"])


def to_emergency(row: Any) -> Emergency:
    return Emergency(
        emergency_id=row["emergency_id"], name=row["name"], polygon=json.loads(row["polygon"]),
        lead=row["lead"], assisting=list(row["assisting"]), priority=row["priority"],
        declared_at=row["declared_at"], declared_by=row["declared_by"],
        ended_at=row["ended_at"], cases_raised=row["cases_raised"])


class DispatchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # -- rules ------------------------------------------------------------------------------

    async def rules(self, include_deleted: bool = False) -> list[Rule]:
        rows = await self.pool.fetch(
            "SELECT * FROM rules" + ("" if include_deleted else " WHERE NOT deleted")
            + " ORDER BY rule_id")
        return [to_rule(r) for r in rows]

    async def rule(self, rule_id: int, version: int | None = None) -> Rule | None:
        if version is None:
            row = await self.pool.fetchrow("SELECT * FROM rules WHERE rule_id = $1", rule_id)
        else:
            row = await self.pool.fetchrow(
                "SELECT * FROM rule_versions WHERE rule_id = $1 AND version = $2",
                rule_id, version)
        return None if row is None else to_rule(row)

    async def rule_history(self, rule_id: int) -> list[Rule]:
        rows = await self.pool.fetch(
            "SELECT * FROM rule_versions WHERE rule_id = $1 ORDER BY version", rule_id)
        return [to_rule(r) for r in rows]

    async def add_rules(self, bodies: Sequence[RuleIn], by: str) -> list[Rule]:
        async with self.pool.acquire() as conn, conn.transaction():
            created = []
            for body in bodies:
                row = await conn.fetchrow(
                    "INSERT INTO rules (version, body, updated_by) VALUES (1, $1::jsonb, $2)"
                    " RETURNING *", msgspec.json.encode(body).decode(), by)
                await self._version(conn, row)
                created.append(to_rule(row))
            return created

    async def update_rule(self, rule_id: int, body: RuleIn | None, by: str,
                          expected_version: int | None) -> Rule:
        """A new version of the rule (None: deleted)."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM rules WHERE rule_id = $1 FOR UPDATE", rule_id)
            if row is None or row["deleted"]:
                raise NotFound(f"no rule {rule_id}")
            if expected_version is not None and row["version"] != expected_version:
                raise Conflict(f"rule {rule_id} is at version {row['version']}, not "
                               f"{expected_version}")
            row = await conn.fetchrow(
                "UPDATE rules SET version = version + 1, body = coalesce($2::jsonb, body),"
                " deleted = $3, updated_at = now(), updated_by = $4 WHERE rule_id = $1"
                " RETURNING *", rule_id,
                None if body is None else msgspec.json.encode(body).decode(), body is None, by)
            await self._version(conn, row)
            return to_rule(row)

    async def _version(self, conn: asyncpg.Connection, row: Any) -> None:
        await conn.execute(
            "INSERT INTO rule_versions (rule_id, version, body, deleted, at, by)"
            " VALUES ($1, $2, $3, $4, $5, $6)", row["rule_id"], row["version"], row["body"],
            row["deleted"], row["updated_at"], row["updated_by"])

    async def rules_changed_at(self) -> Any:
        return await self.pool.fetchval("SELECT (max(updated_at), count(*)) FROM rules")

    # -- the case projection --------------------------------------------------------------------

    async def lock_case(self, conn: asyncpg.Connection, case_id: int) -> Any:
        """The case's row, locked for this transaction (inserted blank if new): one statement,
        as the conflict's no-op update takes the row lock."""
        return await conn.fetchrow(
            "INSERT INTO cases AS c (case_id, version, status) VALUES ($1, 0, 'received')"
            " ON CONFLICT (case_id) DO UPDATE SET version = c.version RETURNING *", case_id)

    async def save_case(self, conn: asyncpg.Connection, case: dict[str, Any]) -> None:
        await conn.execute(
            "UPDATE cases SET version = $2, status = $3, category = $4, title = $5,"
            " district = $6, street = $7, lon = $8, lat = $9,"
            " geom = CASE WHEN $8::float8 IS NULL OR $9::float8 IS NULL THEN NULL"
            "        ELSE ST_SetSRID(ST_MakePoint($8, $9), 4326) END,"
            " handling_unit = $10, updated_at = now() WHERE case_id = $1",
            case["case_id"], case["version"], case["status"], case["category"],
            case["title"] or "", case["district"], case["street"], case["lon"], case["lat"],
            case["handling_unit"])

    async def routing_facts(self, conn: Conn, case_id: int) -> Any:
        """The case's projection, with the latest active emergency covering its point
        (`covering_emergency`, or NULL): what routing needs, in one round trip."""
        return await conn.fetchrow(
            "SELECT c.*, (SELECT e.emergency_id FROM emergencies e WHERE e.ended_at IS NULL"
            "  AND ST_Covers(e.geom, c.geom) ORDER BY e.emergency_id DESC LIMIT 1)"
            " AS covering_emergency FROM cases c WHERE c.case_id = $1", case_id)

    # The projection's columns an event moves: its own values where it carries them.
    _ADVANCE = (
        "version = $2, status = $3, category = coalesce($4, c.category),"
        " district = CASE WHEN $9 THEN $5 ELSE c.district END,"
        " street = CASE WHEN $9 THEN $6 ELSE c.street END,"
        " lon = CASE WHEN $9 THEN $7 ELSE c.lon END, lat = CASE WHEN $9 THEN $8 ELSE c.lat END,"
        " geom = CASE WHEN NOT $9 THEN c.geom WHEN $7::float8 IS NULL OR $8::float8 IS NULL"
        "  THEN NULL ELSE ST_SetSRID(ST_MakePoint($7, $8), 4326) END,"
        " handling_unit = coalesce($10, c.handling_unit), updated_at = now()")

    async def advance_case(self, event: CaseEvent) -> Literal["applied", "seen", "other"]:
        """Apply an event that moves only the projection, in one statement, if it is the
        case's next: `applied`; `seen` if the case is past it; `other` (a gap, a race): the
        caller takes the usual path."""
        loc = event.location
        args = (event.case_id, event.seq, event.to_status, event.category,
                loc and loc.district, loc and loc.street, loc and loc.lon, loc and loc.lat,
                loc is not None, event.unit)
        if event.seq == 1:  # a new case: no row yet (or a blank one, version 0)
            moved = await self.pool.fetchval(
                "INSERT INTO cases AS c (case_id, version, status, category, district, street,"
                " lon, lat, geom, handling_unit) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                " CASE WHEN $9 AND $7::float8 IS NOT NULL AND $8::float8 IS NOT NULL"
                "  THEN ST_SetSRID(ST_MakePoint($7, $8), 4326) END, $10)"
                " ON CONFLICT (case_id) DO UPDATE SET " + self._ADVANCE +
                " WHERE c.version = 0 RETURNING version", *args)
            return "seen" if moved is None else "applied"  # (not moved: its version is ≥ 1)
        row = await self.pool.fetchrow(
            "WITH moved AS (UPDATE cases AS c SET " + self._ADVANCE +
            " WHERE c.case_id = $1 AND c.version = $2 - 1 RETURNING c.version)"
            " SELECT (SELECT version FROM moved) AS moved,"
            " (SELECT version FROM cases WHERE case_id = $1) AS before", *args)
        if row["moved"] is not None:
            return "applied"
        return "seen" if row["before"] is not None and row["before"] >= event.seq else "other"

    async def version(self, case_id: int) -> int:
        """The case's version as committed (0: not known yet)."""
        found = await self.pool.fetchval("SELECT version FROM cases WHERE case_id = $1", case_id)
        return 0 if found is None else int(found)

    async def case(self, case_id: int) -> Any:
        return await self.pool.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)

    # -- decisions and assignments ------------------------------------------------------------

    async def save_decision(self, conn: Conn, case_id: int, accepted_seq: int, lead: str,
                            assisting: list[str], priority: str, rule_id: int | None,
                            rule_version: int | None, emergency_id: int | None,
                            reason: str) -> None:
        await conn.execute(
            "INSERT INTO decisions (case_id, accepted_seq, lead, assisting, priority, rule_id,"
            " rule_version, emergency_id, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (case_id) DO UPDATE SET accepted_seq = $2, lead = $3, assisting = $4,"
            " priority = $5, rule_id = $6, rule_version = $7, emergency_id = $8, reason = $9,"
            " decided_at = now()", case_id, accepted_seq, lead, assisting, priority, rule_id,
            rule_version, emergency_id, reason)

    async def decision(self, conn: Conn, case_id: int) -> Any:
        return await conn.fetchrow("SELECT * FROM decisions WHERE case_id = $1", case_id)

    async def start_round(self, conn: asyncpg.Connection, case_id: int, round_seq: int,
                          values: dict[str, Any]) -> None:
        await conn.execute("UPDATE assignments SET current = false WHERE case_id = $1 AND current",
                           case_id)
        await conn.execute(
            "INSERT INTO assignments (case_id, round_seq, lead, assisting, priority, state,"
            " dispatched_at, accept_due, dispose_due, rule_id, rule_version, emergency_id)"
            " VALUES ($1, $2, $3, $4, $5, 'dispatched', $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT DO NOTHING", case_id, round_seq, values["lead"], values["assisting"],
            values["priority"], values["dispatched_at"], values["accept_due"],
            values["dispose_due"], values["rule_id"], values["rule_version"],
            values["emergency_id"])

    async def current(self, conn: Conn, case_id: int, lock: bool = False) -> Assignment | None:
        row = await conn.fetchrow(
            _ASSIGNMENT + " WHERE a.case_id = $1 AND a.current" + (" FOR UPDATE OF a" if lock
                                                                    else ""), case_id)
        return None if row is None else to_assignment(row)

    async def set_assignment(self, conn: Conn, case_id: int, round_seq: int,
                             **values: Any) -> None:
        sets = ", ".join(f"{k} = ${i + 3}" for i, k in enumerate(values))
        await conn.execute(f"UPDATE assignments SET {sets} WHERE case_id = $1 AND round_seq = $2",
                           case_id, round_seq, *values.values())

    async def assignments(self, unit: str | None, department: str | None,
                          states: Sequence[str], limit: int, current_only: bool = True
                          ) -> list[Assignment]:
        where, args = ["a.current"] if current_only else [], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if unit:
            where.append(f"(a.lead = {arg(unit)} OR {arg(unit)} = ANY(a.assisting))")
        if department:
            where.append(f"(a.lead = {arg(department)} OR a.lead LIKE {arg(department + '-%')})")
        if states:
            where.append(f"a.state = ANY({arg(list(states))}::text[])")
        sql = _ASSIGNMENT + (" WHERE " + " AND ".join(where) if where else "") + \
            f" ORDER BY a.dispatched_at DESC LIMIT {arg(limit)}"
        return [to_assignment(r) for r in await self.pool.fetch(sql, *args)]

    async def open_in_area(self, conn: Conn, geometry: str) -> list[Assignment]:
        rows = await conn.fetch(
            _ASSIGNMENT + " WHERE a.current AND a.state IN ('dispatched', 'accepted')"
            " AND ST_Intersects(c.geom, ST_SetSRID(ST_GeomFromGeoJSON($1), 4326))"
            " ORDER BY a.dispatched_at", geometry)
        return [to_assignment(r) for r in rows]

    # -- timers ---------------------------------------------------------------------------------

    async def add_timers(self, conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
        """(case_id, round_seq, deadline, remind, unit, due_at) rows."""
        await conn.executemany(
            "INSERT INTO timers (case_id, round_seq, deadline, remind, unit, due_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)", rows)

    async def cancel_timers(self, conn: Conn, case_id: int,
                            deadline: str | None = None) -> None:
        await conn.execute(
            "UPDATE timers SET cancelled_at = now() WHERE case_id = $1 AND fired_at IS NULL"
            " AND cancelled_at IS NULL AND ($2::text IS NULL OR deadline = $2)",
            case_id, deadline)

    async def due_reminders(self, conn: asyncpg.Connection, limit: int) -> list[Any]:
        """Due reminders, locked (replicas share them: SKIP LOCKED), each with `live`: its
        round is current and still waits for that deadline; and that deadline (`due`)."""
        with db.span("select", "timers"):
            rows: list[Any] = await conn.fetch(
                "SELECT t.timer_id, t.case_id, t.round_seq, t.deadline, t.unit,"
                " CASE t.deadline WHEN 'accept' THEN a.accept_due ELSE a.dispose_due END AS due,"
                " coalesce(a.round_seq = t.round_seq AND CASE t.deadline"
                "  WHEN 'accept' THEN a.state = 'dispatched'"
                "  ELSE a.state IN ('dispatched', 'accepted') END, false) AS live"
                " FROM timers t LEFT JOIN assignments a ON a.case_id = t.case_id AND a.current"
                " WHERE t.remind AND t.fired_at IS NULL AND t.cancelled_at IS NULL"
                " AND t.due_at <= now() ORDER BY t.due_at LIMIT $1 FOR UPDATE OF t SKIP LOCKED",
                limit)
            return rows

    async def fired(self, conn: asyncpg.Connection, timer_ids: list[int]) -> None:
        await conn.execute("UPDATE timers SET fired_at = now() WHERE timer_id = ANY($1)",
                           timer_ids)

    async def record_escalation(self, conn: asyncpg.Connection, e: Escalation) -> bool:
        inserted = await conn.fetchval(
            "INSERT INTO escalations (case_id, round_seq, deadline, unit, due, escalated_at,"
            " escalated_to) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
            " RETURNING true", e.case_id, e.round_seq, e.deadline, e.unit, e.due,
            e.escalated_at, e.escalated_to)
        if inserted:
            await conn.execute(
                "UPDATE assignments SET escalations = escalations + 1 WHERE case_id = $1"
                " AND round_seq = $2", e.case_id, e.round_seq)
        return bool(inserted)

    async def escalations(self, unit: str | None, to: str | None, limit: int
                          ) -> list[Escalation]:
        rows = await self.pool.fetch(
            "SELECT * FROM escalations WHERE ($1::text IS NULL OR unit = $1)"
            " AND ($2::text IS NULL OR $2 = ANY(escalated_to))"
            " ORDER BY escalated_at DESC LIMIT $3", unit, to, limit)
        return [Escalation(case_id=r["case_id"], round_seq=r["round_seq"], unit=r["unit"],
                           deadline=r["deadline"], due=r["due"], escalated_at=r["escalated_at"],
                           escalated_to=list(r["escalated_to"])) for r in rows]

    # -- staff and tasks --------------------------------------------------------------------------

    _STAFF = ("SELECT s.*, (SELECT count(*) FROM tasks t WHERE t.staff_id = s.staff_id"
              " AND t.state = 'open') AS open_tasks FROM staff s")

    async def set_duty(self, staff_id: str, unit: str, on_duty: bool, name: str | None,
                       lon: float | None, lat: float | None) -> StaffMember:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO staff (staff_id, unit, name, on_duty, lon, lat, geom, position_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5::float8 IS NULL THEN NULL"
                "  ELSE ST_SetSRID(ST_MakePoint($5, $6), 4326) END,"
                "  CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() END)"
                " ON CONFLICT (staff_id) DO UPDATE SET unit = $2, name = coalesce($3, staff.name),"
                " on_duty = $4, duty_changed_at = now(),"
                " lon = coalesce($5, staff.lon), lat = coalesce($6, staff.lat),"
                " geom = coalesce(EXCLUDED.geom, staff.geom),"
                " position_at = coalesce(EXCLUDED.position_at, staff.position_at)",
                staff_id, unit, name, on_duty, lon, lat)
            row = await conn.fetchrow(self._STAFF + " WHERE s.staff_id = $1", staff_id)
            return to_staff(row)

    async def positions(self, rows: Sequence[tuple[str, str, float, float, datetime]]) -> None:
        """(staff_id, unit, lon, lat, at): upsert the latest position, keep the newest."""
        with db.span("upsert", "staff"):
            await self.pool.execute(
                "INSERT INTO staff AS s (staff_id, unit, lon, lat, geom, position_at)"
                " SELECT p.staff_id, p.unit, p.lon, p.lat,"
                "  ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326), p.at"
                " FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[],"
                "  $5::timestamptz[]) AS p(staff_id, unit, lon, lat, at)"
                " ON CONFLICT (staff_id) DO UPDATE SET lon = EXCLUDED.lon, lat = EXCLUDED.lat,"
                " geom = EXCLUDED.geom, position_at = EXCLUDED.position_at"
                " WHERE s.position_at IS NULL OR s.position_at <= EXCLUDED.position_at",
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                [r[3] for r in rows], [r[4] for r in rows])

    async def staff(self, staff_id: str) -> StaffMember | None:
        row = await self.pool.fetchrow(self._STAFF + " WHERE s.staff_id = $1", staff_id)
        return None if row is None else to_staff(row)

    async def roster(self) -> dict[str, tuple[str, bool]]:
        """Everyone's unit and duty: staff_id -> (unit, on_duty)."""
        rows = await self.pool.fetch("SELECT staff_id, unit, on_duty FROM staff")
        return {r["staff_id"]: (r["unit"], r["on_duty"]) for r in rows}

    async def staff_list(self, unit: str | None, on_duty: bool | None, limit: int,
                         area: str | None = None) -> list[StaffMember]:
        rows = await self.pool.fetch(
            self._STAFF + " WHERE ($1::text IS NULL OR s.unit = $1)"
            " AND ($2::bool IS NULL OR s.on_duty = $2)"
            " AND ($4::text IS NULL OR ST_Intersects(s.geom,"
            "      ST_SetSRID(ST_GeomFromGeoJSON($4), 4326)))"
            " ORDER BY s.staff_id LIMIT $3", unit, on_duty, limit, area)
        return [to_staff(r) for r in rows]

    _TASK = ("SELECT t.*, c.lon, c.lat, a.accept_due, a.dispose_due FROM tasks t"
             " LEFT JOIN cases c ON c.case_id = t.case_id"
             " LEFT JOIN assignments a ON a.case_id = t.case_id AND a.current")

    async def add_task(self, conn: Conn, staff_id: str, unit: str, case_id: int | None,
                       emergency_id: int | None, text: str, distance_m: float | None) -> Task:
        if case_id is not None:  # one person at a time holds a case
            await conn.execute(
                "UPDATE tasks SET state = 'cancelled', done_at = now() WHERE case_id = $1"
                " AND state = 'open' AND staff_id <> $2", case_id, staff_id)
            existing = await conn.fetchval(
                "SELECT task_id FROM tasks WHERE case_id = $1 AND staff_id = $2"
                " AND state = 'open'", case_id, staff_id)
            if existing is not None:
                return to_task(await conn.fetchrow(self._TASK + " WHERE t.task_id = $1",
                                                   existing))
        task_id = await conn.fetchval(
            "INSERT INTO tasks (staff_id, unit, case_id, emergency_id, text, distance_m)"
            " VALUES ($1, $2, $3, $4, $5, $6) RETURNING task_id",
            staff_id, unit, case_id, emergency_id, text, distance_m)
        return to_task(await conn.fetchrow(self._TASK + " WHERE t.task_id = $1", task_id))

    async def tasks(self, staff_id: str, states: Sequence[str]) -> list[Task]:
        rows = await self.pool.fetch(
            self._TASK + " WHERE t.staff_id = $1 AND t.state = ANY($2::text[])"
            " ORDER BY t.assigned_at DESC LIMIT 500", staff_id, list(states))
        return [to_task(r) for r in rows]

    async def task(self, task_id: int) -> Task | None:
        row = await self.pool.fetchrow(self._TASK + " WHERE t.task_id = $1", task_id)
        return None if row is None else to_task(row)

    async def finish_task(self, task_id: int) -> None:
        await self.pool.execute(
            "UPDATE tasks SET state = 'done', done_at = now() WHERE task_id = $1"
            " AND state = 'open'", task_id)

    async def close_case_tasks(self, conn: Conn, case_id: int) -> None:
        await conn.execute(
            "UPDATE tasks SET state = 'done', done_at = now() WHERE case_id = $1"
            " AND state = 'open'", case_id)

    # -- feedback ---------------------------------------------------------------------------------

    async def add_feedback(self, conn: Conn, case_id: int, report_id: int, closed_seq: int,
                           channel: str, source_ref: str | None, token: str, unit: str | None,
                           round_seq: int | None, reopen_until: datetime, text: str) -> Any:
        """The feedback row of this report and closure (the first token stays: redelivery)."""
        await conn.execute(
            "INSERT INTO feedback (case_id, report_id, closed_seq, channel, source_ref, token,"
            " unit, round_seq, reopen_until, text)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT DO NOTHING", case_id, report_id, closed_seq, channel, source_ref,
            token, unit, round_seq, reopen_until, text)
        return await conn.fetchrow(
            "SELECT * FROM feedback WHERE case_id = $1 AND report_id = $2 AND closed_seq = $3",
            case_id, report_id, closed_seq)

    async def feedback_by_token(self, conn: Conn, token: str, lock: bool = False) -> Any:
        return await conn.fetchrow(
            "SELECT * FROM feedback WHERE token = $1" + (" FOR UPDATE" if lock else ""), token)

    async def feedback_list(self, case_id: int | None, unit: str | None,
                            department: str | None, rated: bool | None, limit: int
                            ) -> list[FeedbackRecord]:
        """Feedback sent, newest first: of a case, of a unit (or a department's units)."""
        rows = await self.pool.fetch(
            "SELECT * FROM feedback WHERE ($1::bigint IS NULL OR case_id = $1)"
            " AND ($2::text IS NULL OR unit = $2)"
            " AND ($3::text IS NULL OR unit = $3 OR unit LIKE $3 || '-%')"
            " AND ($4::bool IS NULL OR (rated_at IS NOT NULL) = $4)"
            " ORDER BY sent_at DESC, case_id, report_id LIMIT $5",
            case_id, unit, department, rated, limit)
        return [FeedbackRecord(
            case_id=r["case_id"], report_id=r["report_id"], closed_seq=r["closed_seq"],
            channel=r["channel"], text=r["text"], sent_at=r["sent_at"],
            reopen_until=r["reopen_until"], unit=r["unit"], round_seq=r["round_seq"],
            source_ref=r["source_ref"], score=r["score"], comment=r["comment"] or "",
            rated_at=r["rated_at"], reopened=r["reopened"]) for r in rows]

    async def rate(self, conn: Conn, token: str, score: int, comment: str,
                   reopened: bool) -> None:
        await conn.execute(
            "UPDATE feedback SET score = $2, comment = $3, rated_at = now(), reopened = $4"
            " WHERE token = $1", token, score, comment, reopened)

    # -- emergencies ------------------------------------------------------------------------------

    async def add_emergency(self, conn: Conn, name: str, polygon: dict[str, Any], lead: str,
                            assisting: list[str], priority: str, by: str) -> Emergency:
        row = await conn.fetchrow(
            "INSERT INTO emergencies (name, polygon, geom, lead, assisting, priority,"
            " declared_by) VALUES ($1, $2::jsonb, ST_SetSRID(ST_GeomFromGeoJSON($2), 4326),"
            " $3, $4, $5, $6) RETURNING *", name, json.dumps(polygon), lead, assisting,
            priority, by)
        return to_emergency(row)

    async def emergency(self, emergency_id: int) -> Emergency | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM emergencies WHERE emergency_id = $1", emergency_id)
        return None if row is None else to_emergency(row)

    async def emergencies(self, active: bool | None) -> list[Emergency]:
        rows = await self.pool.fetch(
            "SELECT * FROM emergencies WHERE $1::bool IS NULL OR (ended_at IS NULL) = $1"
            " ORDER BY emergency_id DESC LIMIT 200", active)
        return [to_emergency(r) for r in rows]

    async def emergency_at(self, conn: Conn, lon: float | None, lat: float | None
                           ) -> Emergency | None:
        """The latest active emergency covering the point."""
        if lon is None or lat is None:
            return None
        row = await conn.fetchrow(
            "SELECT * FROM emergencies WHERE ended_at IS NULL"
            " AND ST_Covers(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326))"
            " ORDER BY emergency_id DESC LIMIT 1", lon, lat)
        return None if row is None else to_emergency(row)

    async def end_emergency(self, emergency_id: int) -> Emergency:
        row = await self.pool.fetchrow(
            "UPDATE emergencies SET ended_at = coalesce(ended_at, now()) WHERE emergency_id = $1"
            " RETURNING *", emergency_id)
        if row is None:
            raise NotFound(f"no emergency {emergency_id}")
        return to_emergency(row)

    async def count_raised(self, conn: Conn, emergency_id: int, n: int) -> None:
        await conn.execute("UPDATE emergencies SET cases_raised = cases_raised + $2"
                           " WHERE emergency_id = $1", emergency_id, n)
