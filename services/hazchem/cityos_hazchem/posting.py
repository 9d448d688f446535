"""Posting warnings to the event hub, once each: shared by the window compute and live warnings.

A warning is new unless its idempotency key was posted, or a posted warning of the same subject
(the vehicle, or the place) and kind overlaps its time span: the same episode seen again as it
grew, or after a late fix moved its start. The row and the publish share one transaction: if the
publish fails the row is rolled back and a retry posts it; if the commit fails after the
publish, the retry publishes again with the same message id and idempotency key, which
JetStream and the event hub both drop.

A place warning (licence anomaly, suspected site) is one per place and place period, and its key
says which: it is new unless that key was posted. A later window seeing the same place in the
same period adds nothing, though the evidence may have grown (more visits, a higher severity):
the case is open for it already, and a re-computation returns the evidence as it is then.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from cityos_hazchem.reports import to_report
from cityos_hazchem.rules import PLACE_KINDS, Warning, subject
from cityos_kit.bus import Bus


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def post_warnings(pool: asyncpg.Pool, bus: Bus, warnings: Sequence[Warning]) -> int:
    """Publish each new warning on `reports.system`; returns how many were new."""
    posted = 0
    async with pool.acquire() as conn:
        for w in warnings:
            report = to_report(w)
            key = report.idempotency_key or ""
            who = subject(w)  # the vehicle, or the place of a place warning
            async with conn.transaction():
                # One poster at a time per vehicle and kind, so two overlapping warnings posted at
                # once (compute and live) cannot both find the episode new.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   f"{who}\x1f{w.kind}")
                new = await conn.fetchval(
                    "INSERT INTO posted_warnings (key, kind, vehicle, starts_at, ends_at, lon, lat)"
                    " SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $8 OR NOT EXISTS ("
                    "  SELECT 1 FROM posted_warnings WHERE vehicle = $3 AND kind = $2"
                    "  AND starts_at < $5 AND ends_at > $4)"
                    " ON CONFLICT (key) DO NOTHING RETURNING true",
                    key, w.kind, who, _at(w.start), _at(w.end), w.lon, w.lat,
                    w.kind in PLACE_KINDS)
                if new:
                    await bus.publish("reports.system", report, msg_id=key)
                    posted += 1
    return posted
