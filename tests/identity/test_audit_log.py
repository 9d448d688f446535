"""The audit log is append-only in the database; only the retention policy removes old rows."""

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from cityos_contracts.identity import AuditEvent
from cityos_identity.service import Identity


def event(event_id: str, at: datetime) -> AuditEvent:
    return AuditEvent(event_id=event_id, at=at, service="test", actor="someone",
                      actor_kind="client", unit="CGJ", action="POST /x", resource="/x",
                      outcome="success", status_code=201)


async def test_rows_cannot_change(db_identity: Identity) -> None:
    await db_identity.store_audit(event("fixed-1", datetime.now(UTC)))
    await db_identity.store_audit(event("fixed-1", datetime.now(UTC)))  # redelivery: no duplicate
    assert await db_identity.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE event_id = 'fixed-1'") == 1
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db_identity.pool.execute("UPDATE audit_log SET actor = 'nobody'"
                                    " WHERE event_id = 'fixed-1'")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db_identity.pool.execute("DELETE FROM audit_log WHERE event_id = 'fixed-1'")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db_identity.pool.execute("TRUNCATE audit_log")
    # Setting the retention flag by hand does not open the door to recent rows.
    async with db_identity.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('cityos.audit_retention_days', '30', true)")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await conn.execute("DELETE FROM audit_log WHERE event_id = 'fixed-1'")


async def test_retention_removes_only_old_rows(db_identity: Identity) -> None:
    old = datetime.now(UTC) - timedelta(days=db_identity.config.audit_retention_days + 5)
    await db_identity.store_audit(event("ancient-1", old))
    await db_identity.store_audit(event("recent-1", datetime.now(UTC)))
    assert await db_identity.apply_retention() >= 1
    kept = {r["event_id"] for r in await db_identity.pool.fetch(
        "SELECT event_id FROM audit_log WHERE event_id IN ('ancient-1', 'recent-1')")}
    assert kept == {"recent-1"}
    with pytest.raises(asyncpg.PostgresError, match="at least 30 days"):
        await db_identity.pool.execute("SELECT audit_log_apply_retention(1)")


async def test_audit_query_pages(db_identity: Identity) -> None:
    base = datetime.now(UTC)
    for i in range(5):
        await db_identity.store_audit(AuditEvent(
            event_id=f"page-{i}", at=base, service="test", actor="pager", actor_kind="person",
            unit="CMD", action="DELETE /y", resource=f"/y/{i}", outcome="success"))
    first, cursor = await db_identity.query_audit(actor="pager", unit=None, action=None,
                                               since=None, until=None, before_seq=None, limit=3)
    assert [e.resource for e in first] == ["/y/4", "/y/3", "/y/2"] and cursor
    rest, end = await db_identity.query_audit(actor="pager", unit=None, action=None, since=None,
                                           until=None, before_seq=cursor, limit=3)
    assert [e.resource for e in rest] == ["/y/1", "/y/0"] and end is None
