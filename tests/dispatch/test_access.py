"""Every dispatch route declares its scope and enforces it: no token 401, a token without the
scope 403, the right token gets an answer (never a 5xx)."""

import re
from typing import Any

from dispatch.conftest import CENTER, FIELD_STAFF, accepted_case, assignment, spot
from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer, undeclared_routes


def operations(client: Any, values: dict[str, str]) -> list[tuple[str, str]]:
    spec = client.app.openapi_schema.to_schema()
    found = []
    for path, item in spec["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        found += [(method.upper(), url) for method in item
                  if method in ("get", "post", "put", "delete")]
    return found


async def call(client: Any, method: str, url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}" if token else "",
               "content-type": "application/json"}
    body = b"{}" if method in ("POST", "PUT") else None
    response = await client.request(method, url, content=body, headers=headers)
    return int(response.status_code)


async def test_every_route_declares_and_enforces_its_scope(
        events: AsyncTestClient[Any], dispatch: AsyncTestClient[Any],
        events_issuer: LocalIssuer) -> None:
    case_id = await accepted_case(events, "电线杆上贴满了办证小广告", spot(), "0103")
    await assignment(dispatch, case_id)
    # A rule of its own to retire (the seeded ones route other modules' cases).
    spare = await dispatch.post("/rules", json={"lead": "CMD", "category": "1202",
                                                "enabled": False})
    rule_id = str(spare.json()["rule_id"])
    values = {"case_id": str(case_id), "rule_id": rule_id, "staff_id": "someone",
              "task_id": "1", "emergency_id": "1"}
    assert undeclared_routes(dispatch.app) == []
    ops = operations(dispatch, values)
    assert len(ops) >= 30
    no_scope = events_issuer.token(unit="CMD", scopes=("review:read",))
    everything = events_issuer.token(unit="CMD", scopes=(*CENTER, *FIELD_STAFF),
                                     roles=("field_staff",))
    for method, url in ops:
        if method == "DELETE":
            continue  # checked last: it retires the rule
        assert await call(dispatch, method, url, None) == 401, (method, url)
        assert await call(dispatch, method, url, no_scope) == 403, (method, url)
        status = await call(dispatch, method, url, everything)
        assert status not in (401, 403) and status < 500, (method, url, status)
    for token, expected in ((None, 401), (no_scope, 403), (everything, 200)):
        assert await call(dispatch, "DELETE", f"/rules/{rule_id}", token) == expected
