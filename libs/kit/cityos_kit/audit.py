"""The audit trail: every state-changing call and every read of personal data, on NATS.

Services publish `AuditEvent`s on `audit.<service>` (msg id = event id, so a retry is not a
second entry); the identity service keeps them in its append-only table for auditors.
State-changing calls are recorded by `AuditMiddleware` (installed by `AuthPlugin`); reads of
personal data are recorded by the handler: `await personal_data_read(request, "case/42/reporter")`.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware.base import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cityos_contracts.identity import AuditEvent, Outcome, Principal
from cityos_contracts.subjects import AUDIT_EVENTS
from cityos_kit.bus import Bus, current_trace_id
from cityos_kit.telemetry import logger

log = logger("cityos.audit")
STATE_CHANGING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def outcome_of(status_code: int) -> Outcome:
    if status_code in (401, 403, 429):
        return "denied"
    return "success" if status_code < 400 else "failure"


class AuditLog:
    """Records audit events of one service."""

    def __init__(self, bus: Bus, service: str) -> None:
        self.bus = bus
        self.service = service

    async def record(self, *, action: str, resource: str, outcome: Outcome,
                     principal: Principal | None = None, actor: str | None = None,
                     unit: str = "", status_code: int | None = None, ip: str = "",
                     detail: str = "") -> AuditEvent:
        event = AuditEvent(
            event_id=uuid.uuid4().hex, at=datetime.now(UTC), service=self.service,
            actor=principal.sub if principal else (actor or "anonymous"),
            actor_kind=principal.kind if principal else ("client" if actor else "anonymous"),
            unit=principal.unit if principal else unit, action=action, resource=resource,
            outcome=outcome, status_code=status_code, ip=ip, trace_id=current_trace_id(),
            detail=detail,
        )
        await self.bus.publish(AUDIT_EVENTS.format(service=self.service), event,
                               msg_id=event.event_id)
        return event


def _audit_log(scope: Scope) -> AuditLog | None:
    from cityos_kit.auth import STATE_KEY

    sec = scope["litestar_app"].state.get(STATE_KEY)
    audit = getattr(sec, "audit", None)
    return audit if isinstance(audit, AuditLog) else None


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class AuditMiddleware(ASGIMiddleware):
    """Records each POST/PUT/PATCH/DELETE with who, unit, address, path and status, after the
    response is sent. A route may opt out with opt={"audit": False} when it records its own
    (the token endpoint records grants with the client id it checked)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP or scope.get("method") not in STATE_CHANGING:
            await next_app(scope, receive, send)
            return
        method = scope["method"]
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            handler = scope.get("route_handler")
            opted_out = handler is not None and handler.opt.get("audit") is False
            audit = _audit_log(scope)
            if audit is not None and not opted_out:
                user = scope.get("user")
                try:
                    await audit.record(
                        principal=user if isinstance(user, Principal) else None,
                        action=f"{method} {scope['path']}", resource=scope["path"],
                        outcome=outcome_of(status), status_code=status, ip=client_ip(scope),
                    )
                except Exception as exc:  # the call is done; losing its audit must be loud
                    log.error("audit_publish_failed", path=scope["path"], error=repr(exc))


async def personal_data_read(request: Request[Any, Any, Any], resource: str,
                             detail: str = "") -> None:
    """Record that the caller read personal data (e.g. a reporter's phone number)."""
    audit = _audit_log(request.scope)
    if audit is None:
        raise RuntimeError("no audit log on this app: install AuthPlugin")
    user = request.scope.get("user")
    await audit.record(
        principal=user if isinstance(user, Principal) else None,
        action="read personal_data", resource=resource, outcome="success",
        status_code=200, ip=client_ip(request.scope), detail=detail,
    )
