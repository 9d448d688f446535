"""Every event-hub route declares its scope and enforces it: no token 401, a token without the
scope 403, the right token gets an answer (never a 5xx)."""

import re
from typing import Any

from events.conftest import OPERATOR, post_report, report
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer, undeclared_routes

# Public by design: Open311 discovery and the category list (the city's published services).
PUBLIC = {"/categories", "/open311/v2/discovery.json", "/open311/v2/discovery.xml",
          "/open311/v2/services.json", "/open311/v2/services.xml", "/open311/v2/services/{name}"}


def operations(client: Any, values: dict[str, str]) -> list[tuple[str, str, str]]:
    spec = client.app.openapi_schema.to_schema()
    found = []
    for path, item in spec["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        found += [(method.upper(), url, path) for method in item if method in ("get", "post")]
    return found


async def call(client: Any, method: str, url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}" if token else ""}
    params = {"max_events": "1", "since": "1"} if url.endswith("/feed") else None
    body = b"{}" if method == "POST" else None
    response = await client.request(method, url, content=body, params=params, headers={
        **headers, "content-type": "application/json"})
    return int(response.status_code)


async def test_every_route_declares_and_enforces_its_scope(
        events: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:
    receipt = await post_report(events, report("小区绿化带被人挖了种菜"))
    values = {"case_id": str(receipt["case_id"]), "report_id": str(receipt["report_id"]),
              "name": f"{receipt['report_id']}.json"}
    service = "/open311/v2/services/0902.json"
    assert undeclared_routes(events.app) == []
    ops = operations(events, values)
    assert len(ops) >= 20
    no_scope = events_issuer.token(unit="CMD", scopes=("review:read",))
    right = events_issuer.token(unit="CMD", scopes=OPERATOR)
    for method, url, path in ops:
        if path in PUBLIC:
            url = service if path.startswith("/open311/v2/services/") else url
            assert await call(events, method, url, None) == 200, url
            continue
        assert await call(events, method, url, None) == 401, (method, url)
        assert await call(events, method, url, no_scope) == 403, (method, url)
        status = await call(events, method, url, right)
        assert status not in (401, 403) and status < 500, (method, url, status)
