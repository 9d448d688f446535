"""Open311 GeoReport v2, so citizen-reporting apps built for it talk to CityOS unchanged.

Services are the city's categories; a service request is a report (its id is the report id),
and its status is its case's: `closed` once the case is closed or rejected. Both of the
specification's formats: the extension (`.json` or `.xml`) chooses. Apps authenticate with a
bearer token, or put that token in `api_key` (query or form field) as Open311 clients do;
errors come as Open311's `[{code, description}]` (`<errors><error>` in XML).
"""

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, NotFoundException
from litestar.middleware.base import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from cityos_contracts.cases import (
    Case,
    Open311Created,
    Open311Error,
    Open311Request,
    Open311Service,
    Open311ServiceDefinition,
    Report,
    ReporterContact,
    ReportIn,
)
from cityos_events.intake import KeyReused, Rejected
from cityos_kit.auth import PUBLIC, InvalidToken, scope, security

MAX_REQUESTS = 1000
FORMATS = ("json", "xml")
XML = "text/xml; charset=utf-8"


class ApiKeyMiddleware(ASGIMiddleware):
    """Accept Open311's `api_key` (query or form) as the bearer token when none was sent."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("user") is None:
            key = _first(parse_qs(scope.get("query_string", b"").decode("latin-1")), "api_key")
            headers = dict(scope.get("headers", []))
            if key is None and b"application/x-www-form-urlencoded" in \
                    headers.get(b"content-type", b""):
                body, receive = await _buffer(receive)
                key = _first(parse_qs(body.decode("utf-8", "replace")), "api_key")
            if key:
                try:
                    scope["user"] = await security(scope["litestar_app"]).verifier.verify(key)
                    scope["auth"] = None
                except InvalidToken as exc:
                    scope["auth"] = str(exc)
        await next_app(scope, receive, send)


def _first(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body, and a `receive` that gives it again to the handler."""
    chunks: list[bytes] = []
    more = True
    while more:
        message: Any = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def _errors(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = exc.headers if isinstance(exc, HTTPException) else None
    fmt = "xml" if request.url.path.endswith(".xml") else "json"
    return _answer(fmt, "errors", [Open311Error(code=status, description=str(detail))],
                   status_code=status, headers=headers)


def _split(name: str) -> tuple[str, str]:
    """`0301.json` → ("0301", "json"): what is asked for, and in which format."""
    stem, _, fmt = name.rpartition(".")
    if not stem or fmt not in FORMATS:
        raise HTTPException(status_code=400, detail="the formats served are .json and .xml")
    return stem, fmt


def _format(request: Request[Any, Any, Any]) -> str:
    return _split(request.url.path)[1]


def _answer(fmt: str, root: str, payload: Any, status_code: int = 200,
            headers: dict[str, str] | None = None) -> Response[Any]:
    """`payload` as JSON, or as GeoReport v2's XML: a list is `root` with an element per item
    (`errors` → `error`, `services` → `service`, `service_requests` → `request`)."""
    if fmt == "json":
        return Response(payload, status_code=status_code, headers=headers)
    element = ET.Element(root)
    if isinstance(payload, Sequence):
        item = "request" if root == "service_requests" else root.removesuffix("s")
        for value in payload:
            _fill(ET.SubElement(element, item), msgspec.to_builtins(value))
    else:
        _fill(element, msgspec.to_builtins(payload))
    return Response(ET.tostring(element, encoding="utf-8", xml_declaration=True),
                    media_type=XML, status_code=status_code, headers=headers)


def _fill(element: ET.Element, value: Any) -> None:
    """Dicts become child elements, lists repeat the singular (`attributes` → `attribute`),
    booleans are `true`/`false` and nothing is an empty element."""
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), item)
    elif isinstance(value, list):
        for item in value:
            _fill(ET.SubElement(element, element.tag.removesuffix("s")), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


@get(["/discovery.json", "/discovery.xml"], opt=PUBLIC, sync_to_thread=False)
def discovery(request: Request[Any, Any, Any]) -> Response[Any]:
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    return _answer(_format(request), "discovery", {
        "changeset": "2026-11-21T00:00:00Z", "contact": "the city's command center",
        "key_service": "a bearer token of the city's identity service",
        "endpoints": [{"specification": "http://wiki.open311.org/GeoReport_v2", "url": base,
                       "changeset": "2026-11-21T00:00:00Z", "type": "production",
                       "formats": ["application/json", "text/xml"]}]})


@get(["/services.json", "/services.xml"], opt=PUBLIC, sync_to_thread=False)
def services(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    return _answer(_format(request), "services", [
        Open311Service(service_code=c["code"], service_name=c["name"],
                       description=c["description"], metadata=False, type="realtime",
                       keywords=", ".join([c["name_en"], *c.get("examples", [])]),
                       group=c["group"]) for c in state.city.categories])


@get("/services/{name:str}", opt=PUBLIC, sync_to_thread=False)
def service_definition(name: str, state: State) -> Response[Any]:
    code, fmt = _split(name)
    if code not in state.store.categories:
        raise NotFoundException(detail=f"no service {code}")
    return _answer(fmt, "service_definition",
                   Open311ServiceDefinition(service_code=code, attributes=[]))


@post(["/requests.json", "/requests.xml"], opt=scope("cases:report"))
async def create_request(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Create a service request: the form fields of GeoReport v2 (or the same as JSON)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        fields = {k: str(v) for k, v in msgspec.json.decode(await request.body()).items()}
    else:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
    code = fields.get("service_code")
    if not code:
        raise HTTPException(status_code=400, detail="service_code is required")
    if code not in state.store.categories:
        raise HTTPException(status_code=404, detail=f"no service {code}")
    try:
        lat = float(fields["lat"]) if fields.get("lat") else None
        lon = float(fields["long"]) if fields.get("long") else None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail="lat and long must be numbers") from exc
    name = (fields.get("last_name", "") + fields.get("first_name", "")) or None
    contact = ReporterContact(name=name, phone=fields.get("phone") or None,
                              email=fields.get("email") or None,
                              account=fields.get("account_id") or fields.get("device_id") or None)
    report = ReportIn(
        channel="citizen_app", text=fields.get("description", ""),
        reported_at=datetime.now(UTC), lon=lon, lat=lat,
        address=fields.get("address_string") or None, reporter=contact,
        media=[fields["media_url"]] if fields.get("media_url") else [], category=code,
        idempotency_key=request.headers.get("idempotency-key"))
    try:
        receipt, created = await state.intake.take(report)
    except Rejected as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except KeyReused as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    answer = Open311Created(service_request_id=str(receipt.report_id),
                            service_notice=f"case {receipt.case_id}",
                            account_id=contact.account)
    return _answer(_format(request), "service_requests", [answer],
                   status_code=201 if created else 200)


def _as_request(report: Report, case: Case, state: State) -> Open311Request:
    departments = state.city.departments
    closed = case.status in ("closed", "rejected")
    return Open311Request(
        service_request_id=str(report.report_id), status="closed" if closed else "open",
        status_notes=f"case {case.case_id}: {case.status}",
        service_code=case.category or report.category_hint,
        service_name=case.category_name, description=report.text,
        agency_responsible=departments.get(case.department or "", {}).get("name"),
        requested_datetime=report.reported_at, updated_datetime=case.updated_at,
        expected_datetime=case.dispose_due,
        address=report.location.address or report.location.street_name,
        lat=report.location.lat, long=report.location.lon,
        media_url=report.media[0] if report.media else None)


@get(["/requests.json", "/requests.xml"], opt=scope("cases:report"))
async def list_requests(request: Request[Any, Any, Any], state: State,
                        service_request_id: str | None = None,
                        service_code: str | None = None, start_date: datetime | None = None,
                        end_date: datetime | None = None, status: str | None = None
                        ) -> Response[Any]:
    ids = []
    if service_request_id:
        try:
            ids = [int(i) for i in service_request_id.split(",")]
        except ValueError as exc:
            raise HTTPException(status_code=400, detail="service_request_id: numbers") from exc
    wanted = set((status or "").split(",")) - {""}
    if wanted - {"open", "closed"}:
        raise HTTPException(status_code=400, detail="status is open and/or closed")
    closed = None if len(wanted) != 1 else wanted == {"closed"}
    found = await state.store.reports_with_cases(ids, service_code, start_date, end_date, closed,
                                                 MAX_REQUESTS)
    return _answer(_format(request), "service_requests",
                   [_as_request(report, case, state) for report, case in found])


@get("/requests/{name:str}", opt=scope("cases:report"))
async def get_request(name: str, state: State) -> Response[Any]:
    stem, fmt = _split(name)
    try:
        report_id = int(stem)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=f"no request {name}") from exc
    found = await state.store.reports_with_cases([report_id])
    if not found:
        raise HTTPException(status_code=404, detail=f"no request {report_id}")
    return _answer(fmt, "service_requests",
                   [_as_request(report, case, state) for report, case in found])


router = Router(
    path="/open311/v2", route_handlers=[discovery, services, service_definition, create_request,
                                         list_requests, get_request],
    middleware=[ApiKeyMiddleware()], exception_handlers={Exception: _errors}, tags=["open311"])
