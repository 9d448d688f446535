"""The dispatcher: folds the hub's case events into assignments and timers, routes accepted
cases, fires deadlines, and carries out units' actions through the hub.

One path changes dispatch's state: `apply(conn, events)`, in the case's row lock, skipping
events it has seen (`seq` ≤ the case's version). The NATS consumer feeds it every case event;
an HTTP action feeds it the history the hub answered with, so the caller sees the result at
once and the later delivery of the same events is a no-op. (The consumer's shortcuts: an event
that moves only the projection is applied in one guarded statement, `store.advance_case`, and
one already seen is skipped after reading the case's version.)
"""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from cityos_contracts.cases import CaseDetail, CaseEvent
from cityos_contracts.dispatch import (
    Assignment,
    Emergency,
    Escalation,
    ExtensionDecision,
    RouteDecision,
    Rule,
    UnitAction,
)
from cityos_contracts.identity import Principal
from cityos_dispatch.config import DispatchSettings
from cityos_dispatch.hub import EventHub, HubRefused
from cityos_dispatch.journal import SYSTEM, Journal
from cityos_dispatch.rules import (
    COMMAND_CENTER,
    CaseFacts,
    CityUnits,
    RuleError,
    decide_by_rules,
    raised,
)
from cityos_dispatch.store import Conflict, DispatchStore, NotFound
from cityos_dispatch.timers import DueTimer, deadlines, timer_rows
from cityos_kit.telemetry import logger

log = logger("cityos.dispatch")
RULES_TTL_S = 2.0  # other replicas' rule edits show up within this
# A unit's action -> the hub's action it is.
HUB_ACTIONS = {"accept": "start", "return": "return", "handled": "finish", "progress": "note",
               "extension": "note"}
OPEN_STATES = ("dispatched", "accepted")
# The case events that change the current round of handling (besides `dispatched`).
ROUND_EVENTS = frozenset({"started", "handled", "reworked", "returned", "closed", "rejected",
                          "merged"})


class Forbidden(Exception):
    pass


class Gap(Exception):
    """An event arrived before one it follows (another replica has that one, or it was
    redelivered later): the case's history is read from the hub instead."""


class Dispatcher:
    def __init__(self, pool: asyncpg.Pool, store: DispatchStore, hub: EventHub,
                 journal: Journal, units: CityUnits, settings: DispatchSettings) -> None:
        self.pool, self.store, self.hub, self.journal = pool, store, hub, journal
        self.units, self.settings = units, settings
        self.tz = ZoneInfo(settings.timezone)
        self._rules: list[Rule] = []
        self._rules_at = 0.0

    # -- routing ----------------------------------------------------------------------------

    async def rules(self) -> list[Rule]:
        if time.monotonic() - self._rules_at > RULES_TTL_S:
            self._rules = await self.store.rules()
            self._rules_at = time.monotonic()
        return self._rules

    def forget_rules(self) -> None:
        self._rules_at = 0.0

    async def decide(self, conn: Any, case: Any, at: datetime) -> RouteDecision:
        """The units a case goes to: an active emergency covering it, else the routing rules."""
        return await self._decide(case, await self.store.emergency_at(
            conn, case["lon"], case["lat"]), at)

    async def _decide(self, case: Any, emergency: Emergency | None, at: datetime
                      ) -> RouteDecision:
        priority = self.units.priority_of(case["category"])
        if emergency is not None:
            assisting = [u for u in emergency.assisting if u != emergency.lead]
            return RouteDecision(
                lead=emergency.lead, assisting=assisting,
                priority=raised(priority, emergency.priority),
                emergency_id=emergency.emergency_id,
                reason=f"emergency {emergency.emergency_id} ({emergency.name}) covers the place")
        facts = CaseFacts(case["category"], case["district"], case["street"], at)
        # The same function the rule preview (POST /rules/preview) runs.
        return decide_by_rules(self.units, await self.rules(), facts, self.tz, priority)

    async def route(self, conn: asyncpg.Connection, event: CaseEvent,
                    case: dict[str, Any]) -> None:
        """An accepted case (`case`: its projection as just saved): decide, and dispatch it
        through the hub (expected_version guards against a case the center changed meanwhile).
        """
        try:
            decision = await self.decide(conn, case, event.at)
        except RuleError as exc:
            log.warning("no_route", case_id=event.case_id, reason=str(exc))
            return  # the center dispatches it by hand
        await self._save_decision(conn, event, decision)
        detail = await self._dispatch(event, decision)
        if detail is not None:
            await self.apply(conn, detail)

    async def _save_decision(self, conn: asyncpg.Connection, event: CaseEvent,
                             decision: RouteDecision) -> None:
        await self.store.save_decision(
            conn, event.case_id, event.seq, decision.lead, decision.assisting,
            decision.priority, decision.rule_id, decision.rule_version, decision.emergency_id,
            decision.reason)

    async def _dispatch(self, event: CaseEvent, decision: RouteDecision) -> CaseDetail | None:
        """The hub's dispatch to the decided unit; None if the hub refused (the case changed:
        expected_version guards against a case the center changed meanwhile)."""
        joint = f"; assisting {', '.join(decision.assisting)}" if decision.assisting else ""
        try:
            return await self.hub.act(event.case_id, "dispatch", unit=decision.lead,
                                      reason=decision.reason + joint,
                                      expected_version=event.seq)
        except HubRefused as exc:
            log.info("dispatch_refused", case_id=event.case_id, detail=exc.detail)
            return None

    async def _route_at_once(self, event: CaseEvent
                             ) -> tuple[RouteDecision, CaseDetail | None] | None:
        """An accepted case whose earlier events are all here: decided and sent to the hub
        after one read, with no transaction or lock held across the hub's call (the hub's
        expected_version is the guard), so the dispatch waits for one database round trip
        instead of five. None: the usual path decides (a gap, a case seen already, no rule).
        """
        case = await self.store.routing_facts(self.pool, event.case_id)
        if case is None or case["version"] != event.seq - 1:
            return None
        emergency = None
        if case["covering_emergency"] is not None:
            emergency = await self.store.emergency(case["covering_emergency"])
        try:
            decision = await self._decide(case, emergency, event.at)
        except RuleError:
            return None  # the usual path says so in the log; the center dispatches by hand
        return decision, await self._dispatch(event, decision)

    # -- the case events ---------------------------------------------------------------------

    async def apply(self, conn: asyncpg.Connection, source: CaseDetail | list[CaseEvent]
                    ) -> list[CaseEvent]:
        """Fold new events of one case into the projection, assignments and timers; returns
        the events applied (none if all were seen)."""
        applied, _ = await self._apply(conn, source)
        return applied

    async def _apply(self, conn: asyncpg.Connection, source: CaseDetail | list[CaseEvent],
                     locked: Any = None) -> tuple[list[CaseEvent], dict[str, Any]]:
        """`apply`, also returning the case's projection as saved (`locked`: the case's row,
        if this transaction has locked it already)."""
        events = source.history if isinstance(source, CaseDetail) else source
        if not events:
            return [], {}
        case_id = events[0].case_id
        row = locked if locked is not None else await self.store.lock_case(conn, case_id)
        case = dict(row)
        if isinstance(source, CaseDetail):
            case["title"] = source.case.title
        applied = []
        for event in sorted(events, key=lambda e: e.seq):
            if event.seq <= case["version"]:
                continue
            if event.seq > case["version"] + 1 and not isinstance(source, CaseDetail):
                raise Gap(f"case {case_id}: event {event.seq} after {case['version']}")
            case["version"], case["status"] = event.seq, event.to_status
            if event.category is not None:
                case["category"] = event.category
            if event.location is not None:
                loc = event.location
                case |= {"district": loc.district, "street": loc.street, "lon": loc.lon,
                         "lat": loc.lat}
            if event.unit is not None:
                case["handling_unit"] = event.unit
            await self._on_event(conn, case, event)
            applied.append(event)
        if applied or isinstance(source, CaseDetail):
            await self.store.save_case(conn, case)
        return applied, case

    async def _on_event(self, conn: asyncpg.Connection, case: dict[str, Any],
                        event: CaseEvent) -> None:
        kind, case_id = event.kind, event.case_id
        if kind == "dispatched" and event.unit:
            await self._start_round(conn, case, event)
            return
        if kind not in ROUND_EVENTS:  # no read of the assignment for the many that pass by
            return
        current = await self.store.current(conn, case_id)
        if current is None:
            return
        rnd = current.round_seq
        if kind == "started":
            await self.store.set_assignment(conn, case_id, rnd, state="accepted",
                                            accepted_at=current.accepted_at or event.at)
            await self.store.cancel_timers(conn, case_id, "accept")
        elif kind == "handled":
            await self.store.set_assignment(conn, case_id, rnd, state="handled",
                                            handled_at=event.at)
            await self.store.cancel_timers(conn, case_id)
        elif kind == "reworked":
            await self.store.set_assignment(conn, case_id, rnd, state="accepted")
            await self.store.add_timers(conn, [(case_id, rnd, "dispose", False, current.lead,
                                                current.dispose_due)])
        elif kind in ("returned", "closed", "rejected", "merged"):
            state = {"returned": "returned", "closed": "closed"}.get(kind, "ended")
            await self.store.set_assignment(conn, case_id, rnd, state=state)
            await self.store.cancel_timers(conn, case_id)
            await self.store.close_case_tasks(conn, case_id)

    async def _start_round(self, conn: asyncpg.Connection, case: dict[str, Any],
                           event: CaseEvent) -> None:
        """A dispatch, by this service or by hand: the unit's round and its deadlines."""
        assert event.unit is not None
        decision = await self.store.decision(conn, event.case_id)
        if decision is not None and decision["lead"] == event.unit and \
                decision["accepted_seq"] < event.seq:
            assisting, priority = list(decision["assisting"]), decision["priority"]
            rule_id, rule_version = decision["rule_id"], decision["rule_version"]
            emergency_id = decision["emergency_id"]
        else:  # the center chose the unit itself
            priority = self.units.priority_of(case["category"])
            emergency = await self.store.emergency_at(conn, case["lon"], case["lat"])
            if emergency is not None:
                priority = raised(priority, emergency.priority)
            assisting, rule_id, rule_version = [], None, None
            emergency_id = emergency.emergency_id if emergency else None
        category = self.units.categories.get(case["category"] or "")
        accept_due, dispose_due = deadlines(category, priority, event.at, self.settings)
        await self.store.cancel_timers(conn, event.case_id)
        await self.store.start_round(conn, event.case_id, event.seq, {
            "lead": event.unit, "assisting": assisting, "priority": priority,
            "dispatched_at": event.at, "accept_due": accept_due, "dispose_due": dispose_due,
            "rule_id": rule_id, "rule_version": rule_version, "emergency_id": emergency_id})
        await self.store.add_timers(conn, timer_rows(
            event.case_id, event.seq, event.unit, event.at,
            {"accept": accept_due, "dispose": dispose_due}, self.settings.remind_at))
        await self.journal.record(
            event.case_id, "routed", event_id=f"routed-{event.case_id}-{event.seq}",
            at=event.at, unit=event.unit, round_seq=event.seq, lead=event.unit,
            assisting=assisting, rule_id=rule_id, rule_version=rule_version,
            emergency_id=emergency_id, priority=priority, accept_due=accept_due,
            dispose_due=dispose_due,
            reason="by rule" if rule_id else ("by emergency" if emergency_id else "by hand"))

    async def on_case_event(self, event: CaseEvent) -> None:
        """The consumer's handler: apply, then react (route an accepted case, tell the
        reporters of a closed one) in the same transaction, so a failed reaction is retried.

        An accepted case goes to the hub first (`_route_at_once`), and what the hub answered
        is applied after: a failure after the hub's dispatch is retried as a redelivery, which
        the hub refuses (its version moved on) and the dispatched event then brings in."""
        from cityos_dispatch.feedback import send_feedback

        routed = None
        if event.kind == "accepted" and self.settings.auto_dispatch:
            routed = await self._route_at_once(event)
        elif event.kind not in ROUND_EVENTS and event.kind not in ("accepted", "dispatched"):
            # Most events only move the projection (reported, classified, noted, escalated):
            # one statement, not a transaction of four round trips.
            if await self.store.advance_case(event) != "other":
                return
        elif await self.store.version(event.case_id) >= event.seq:
            return  # seen: dispatch applied it from the hub's answer (its own dispatch)
        async with self.pool.acquire() as conn, conn.transaction():
            if routed is not None:  # the decision goes in before the dispatch it explains
                row = await self.store.lock_case(conn, event.case_id)
                await self._save_decision(conn, event, routed[0])
                source: CaseDetail | list[CaseEvent] = routed[1] or [event]
                applied, case = await self._apply(conn, source, locked=row)
            else:
                try:
                    applied, case = await self._apply(conn, [event])
                except Gap:
                    applied, case = await self._apply(conn, await self.hub.case(event.case_id))
            for e in applied:
                if e.kind == "accepted" and e.seq == case["version"] and routed is None and \
                        self.settings.auto_dispatch:
                    await self.route(conn, e, case)  # (still accepted)
                elif e.kind == "closed":
                    await send_feedback(self, conn, e)

    # -- deadlines ------------------------------------------------------------------------------

    async def remind(self, due: list[Any]) -> None:
        """A batch of due reminders (DispatchStore.due_reminders): those whose round still
        waits for the deadline are published, all at once."""
        await asyncio.gather(*(self.journal.record(
            r["case_id"], "reminded", event_id=f"reminded-{r['timer_id']}", unit=r["unit"],
            round_seq=r["round_seq"], deadline=r["deadline"], due=r["due"],
            reason=f"{r['deadline']} deadline is near") for r in due if r["live"]))

    async def fire(self, conn: asyncpg.Connection, timer: DueTimer) -> None:
        """A missed deadline: escalated, if its round still waits for it."""
        current = await self.store.current(conn, timer.case_id)
        live = current is not None and current.round_seq == timer.round_seq and (
            current.state == "dispatched" if timer.deadline == "accept"
            else current.state in OPEN_STATES)
        if not live:
            return
        targets = self.units.escalation_targets(timer.unit)
        escalation = Escalation(case_id=timer.case_id, round_seq=timer.round_seq,
                                unit=timer.unit, deadline=timer.deadline,  # type: ignore[arg-type]
                                due=timer.due_at, escalated_at=_now(), escalated_to=targets)
        if not await self.store.record_escalation(conn, escalation):
            return
        reason = (f"{timer.deadline} deadline {timer.due_at.isoformat()} missed by "
                  f"{timer.unit}: escalated to {', '.join(targets)}")
        await self.journal.record(
            timer.case_id, "escalated", event_id=f"escalated-{timer.timer_id}",
            at=escalation.escalated_at, unit=timer.unit, round_seq=timer.round_seq,
            deadline=timer.deadline, due=timer.due_at, escalated_to=targets,
            reason=reason)
        try:
            detail = await self.hub.act(timer.case_id, "escalate", reason=reason)
        except HubRefused as exc:
            log.info("escalation_not_recorded_on_case", case_id=timer.case_id, detail=exc.detail)
            return
        await self.apply(conn, detail)

    # -- units' actions ---------------------------------------------------------------------------

    def check_actor(self, principal: Principal, a: Assignment, action: str) -> None:
        """The lead unit acts (the center may act for it); assisting units report progress."""
        if principal.sees_all_units() or principal.unit == a.lead:
            return
        if action == "progress" and principal.unit in a.assisting:
            return
        raise Forbidden(f"case {a.case_id} is handled by {a.lead}"
                        + (f" (assisting: {', '.join(a.assisting)})" if a.assisting else "")
                        + f", not {principal.unit}")

    async def unit_action(self, case_id: int, action: str, body: UnitAction,
                          principal: Principal, token: str) -> Assignment:
        a = await self.store.current(self.pool, case_id)
        if a is None:
            raise NotFound(f"case {case_id} has not been dispatched")
        self.check_actor(principal, a, action)
        if action in ("return", "progress", "extension") and not body.reason.strip():
            raise Conflict(f"{action} needs a reason")
        if action == "extension":
            if body.hours is None:
                raise Conflict("an extension needs hours")
            if a.state not in OPEN_STATES:
                raise Conflict(f"case {case_id} is {a.state}: nothing to extend")
        reason = body.reason
        if action == "handled" and body.evidence:
            reason = (reason + " " if reason else "") + "[evidence: " + ", ".join(body.evidence) \
                + "]"
        if action == "extension":
            reason = f"extension of {body.hours:g} h requested: {body.reason}"
        assisting = principal.unit in a.assisting and principal.unit != a.lead
        # The caller's own token: the hub checks that unit and records that person.
        detail = await self.hub.act(
            case_id, HUB_ACTIONS[action],
            reason=f"{principal.unit} (assisting): {reason}" if assisting else reason,
            expected_version=body.expected_version,
            token=None if assisting else token)
        async with self.pool.acquire() as conn, conn.transaction():
            await self.apply(conn, detail)
            if action == "handled" and body.evidence:
                await self.store.set_assignment(conn, case_id, a.round_seq,
                                                evidence=list(body.evidence))
            if action == "extension":
                await self.store.set_assignment(conn, case_id, a.round_seq,
                                                extension_pending_h=body.hours,
                                                extension_reason=body.reason)
        kind = {"progress": "progress", "extension": "extension_requested",
                "handled": "evidence"}.get(action)
        if kind is not None:
            await self.journal.record(case_id, kind, actor=principal.sub, unit=principal.unit,
                                      round_seq=a.round_seq, reason=body.reason,
                                      evidence=list(body.evidence), hours=body.hours)
        found = await self.store.current(self.pool, case_id)
        assert found is not None
        return found

    async def decide_extension(self, case_id: int, body: ExtensionDecision,
                               principal: Principal) -> Assignment:
        async with self.pool.acquire() as conn, conn.transaction():
            await self.store.lock_case(conn, case_id)
            a = await self.store.current(conn, case_id, lock=True)
            if a is None:
                raise NotFound(f"case {case_id} has not been dispatched")
            if a.extension_pending_h is None:
                raise Conflict(f"case {case_id} has no extension request")
            hours = body.hours or a.extension_pending_h
            if body.approve:
                scaled = hours * self.settings.time_scale
                new_due = a.dispose_due + _hours(scaled)
                await self.store.set_assignment(conn, case_id, a.round_seq, dispose_due=new_due,
                                                extension_pending_h=None)
                await self.store.cancel_timers(conn, case_id, "dispose")
                if a.state in OPEN_STATES:
                    await self.store.add_timers(conn, timer_rows(
                        case_id, a.round_seq, a.lead, _now(), {"dispose": new_due},
                        self.settings.remind_at))
                text = f"extension of {hours:g} h granted: dispose by {new_due.isoformat()}"
            else:
                await self.store.set_assignment(conn, case_id, a.round_seq,
                                                extension_pending_h=None)
                new_due, text = a.dispose_due, f"extension of {hours:g} h refused"
            detail = await self.hub.act(case_id, "note",
                                        reason=text + (f": {body.reason}" if body.reason else ""))
            await self.apply(conn, detail)
        await self.journal.record(
            case_id, "extension_granted" if body.approve else "extension_refused",
            actor=principal.sub, unit=a.lead, round_seq=a.round_seq, hours=hours,
            dispose_due=new_due, reason=body.reason)
        found = await self.store.current(self.pool, case_id)
        assert found is not None
        return found


def _now() -> datetime:
    return datetime.now(UTC)


def _hours(h: float) -> timedelta:
    return timedelta(hours=h)


__all__ = ["COMMAND_CENTER", "SYSTEM", "Dispatcher", "Forbidden"]
