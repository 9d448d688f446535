"""Every review route declares its scope and enforces it; a department's leader sees only
their department."""

import re
from typing import Any

from litestar.testing import AsyncTestClient

from cityos_kit.auth import LocalIssuer, undeclared_routes


async def test_every_route_declares_and_enforces_its_scope(
        review: AsyncTestClient[Any], events_issuer: LocalIssuer) -> None:
    assert undeclared_routes(review.app) == []
    spec = review.app.openapi_schema.to_schema()
    values = {"unit": "CGJ-329901", "department": "CGJ", "case_id": "1"}
    ops = [(m.upper(), re.sub(r"\{(\w+)\}", lambda x: values[x.group(1)], path))
           for path, item in spec["paths"].items() for m in item if m in ("get", "post", "put")]
    assert len(ops) >= 14
    no_scope = events_issuer.token(unit="CMD", scopes=("cases:read",))
    right = events_issuer.token(unit="CMD", scopes=("review:read", "review:admin"))
    for method, url in ops:
        params = {"figure": "received"} if url.endswith("/drill") else None
        for token, expected in ((None, {401}), (no_scope, {403})):
            headers = {"Authorization": f"Bearer {token}" if token else "",
                       "content-type": "application/json"}
            response = await review.request(method, url, headers=headers, params=params,
                                            content=b"{}" if method != "GET" else None)
            assert response.status_code in expected, (method, url, response.status_code)
        response = await review.request(method, url, params=params, headers={
            "Authorization": f"Bearer {right}", "content-type": "application/json"},
            content=b"{}" if method != "GET" else None)
        assert response.status_code not in (401, 403) and response.status_code < 500, \
            (method, url, response.status_code, response.text)


async def test_a_department_sees_only_its_own(review: AsyncTestClient[Any],
                                              events_issuer: LocalIssuer) -> None:
    leader = {"Authorization": "Bearer " + events_issuer.token(
        unit="HWC", scopes=("review:read",), roles=("leader",))}
    assert (await review.get("/review/units/CGJ-329901", headers=leader)).status_code == 403
    assert (await review.get("/review/reports/CGJ/report.html", headers=leader)
            ).status_code == 403
    assert (await review.get("/review/units", params={"department": "CGJ"}, headers=leader)
            ).status_code == 403
    mine = (await review.get("/review/units", headers=leader)).json()
    assert all(f["department"] == "HWC" for f in mine)
