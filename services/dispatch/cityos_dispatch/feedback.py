"""Closure feedback: tell every reporter of a closed case through their channel, take their
rating, and reopen the case when they are not satisfied, within the window.

The feedback goes out on `feedback.<channel>` for the channel's adapter to deliver (a 12345
call-back, an app push). Each carries a token; the adapter answers the reporter's rating with
it, so only someone who was told about the case can rate it.
"""

import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from cityos_contracts.cases import CaseEvent
from cityos_contracts.dispatch import Feedback, Rating, RatingReceipt
from cityos_contracts.identity import Principal
from cityos_contracts.subjects import FEEDBACK
from cityos_dispatch.hub import HubRefused
from cityos_dispatch.store import Conflict, NotFound

if TYPE_CHECKING:
    from cityos_dispatch.dispatcher import Dispatcher


def message(case_id: int, title: str, reopen_until: datetime, tz: object) -> str:
    local = reopen_until.astimezone(tz).strftime("%Y-%m-%d %H:%M")  # type: ignore[arg-type]
    return (f"您反映的问题（案件 {case_id}：{title}）已办结。如对处理结果不满意，"
            f"请在 {local} 前评价并申请重新办理。")


async def send_feedback(d: "Dispatcher", conn: asyncpg.Connection, closed: CaseEvent) -> None:
    """One feedback per report of the case (redelivery sends the same ones again: same token,
    same msg id, dropped by the stream)."""
    detail = await d.hub.case(closed.case_id)
    current = await d.store.current(conn, closed.case_id)
    until = closed.at + timedelta(hours=d.settings.reopen_window_h)
    text = message(closed.case_id, detail.case.title, until, d.tz)
    for report in detail.reports:
        row = await d.store.add_feedback(
            conn, closed.case_id, report.report_id, closed.seq, report.channel,
            report.source_ref, secrets.token_urlsafe(18), current.lead if current else None,
            current.round_seq if current else None, until, text)
        feedback = Feedback(case_id=closed.case_id, report_id=report.report_id,
                            channel=report.channel, text=row["text"], closed_at=closed.at,
                            token=row["token"], reopen_until=until,
                            source_ref=report.source_ref)
        await d.journal.bus.publish(
            FEEDBACK.format(channel=report.channel), feedback,
            msg_id=f"feedback:{closed.case_id}:{report.report_id}:{closed.seq}")
        await d.journal.record(
            closed.case_id, "feedback_sent",
            event_id=f"feedback-{closed.case_id}-{report.report_id}-{closed.seq}",
            unit=current.lead if current else None,
            round_seq=current.round_seq if current else None, channel=report.channel)


async def rate(d: "Dispatcher", case_id: int, body: Rating, principal: Principal
               ) -> RatingReceipt:
    """Record a reporter's rating; with `reopen`, reopen the case if the window is open.
    A refused reopen changes nothing (the rating is not kept either: send it again)."""
    async with d.pool.acquire() as conn, conn.transaction():
        row = await d.store.feedback_by_token(conn, body.token, lock=True)
        if row is None or row["case_id"] != case_id:
            raise NotFound(f"no feedback of case {case_id} with this token")
        if row["rated_at"] is not None:
            raise Conflict(f"case {case_id} was already rated by this reporter")
        if body.reopen and datetime.now(UTC) > row["reopen_until"]:
            raise Conflict(f"the reopen window of case {case_id} closed at "
                           f"{row['reopen_until'].isoformat()}")
        await d.store.rate(conn, body.token, body.score, body.comment, body.reopen)
        if body.reopen:
            try:
                detail = await d.hub.act(
                    case_id, "reopen",
                    reason=f"reporter not satisfied ({body.score}/5): {body.comment}".rstrip(": "))
            except HubRefused as exc:
                raise Conflict(f"case {case_id} cannot be reopened: {exc.detail}") from exc
            await d.apply(conn, detail)
    await d.journal.record(case_id, "rated", event_id=f"rated-{body.token}",
                           actor=principal.sub, unit=row["unit"], round_seq=row["round_seq"],
                           score=body.score, channel=row["channel"], reason=body.comment)
    if body.reopen:
        await d.journal.record(case_id, "reopen_requested", actor=principal.sub,
                               unit=row["unit"], score=body.score, reason=body.comment)
    return RatingReceipt(case_id=case_id, score=body.score, reopened=body.reopen)
