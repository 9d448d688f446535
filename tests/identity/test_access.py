"""Every identity route declares its scope, and the guard enforces it: no token 401, a token
without the scope 403, the right token gets through."""

import re
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from cityos_kit.auth import undeclared_routes

from .conftest import bearer

PUBLIC_PATHS = ("/oauth/token", "/oauth/revoke", "/people/me/password")


async def test_every_identity_route_declares_and_enforces_its_scope(
        client: AsyncTestClient[Litestar], admin_token: str, auditor_token: str) -> None:
    assert undeclared_routes(client.app) == []
    spec = client.app.openapi_schema.to_schema()
    for path, item in spec["paths"].items():
        url = re.sub(r"\{\w+\}", "no-such-client", path)
        for method, operation in item.items():
            if method not in ("get", "post"):
                continue
            # The OAuth endpoints authenticate by what is sent; a password change by the
            # caller's own token and current password (any person: no scope to lack).
            public = not operation.get("security") and (
                path.startswith("/.well-known") or path in PUBLIC_PATHS)
            request: dict[str, Any] = {"method": method.upper(), "url": url}
            if method == "post":
                request["json"] = {}
            if public:
                continue
            assert (await client.request(**request)).status_code == 401, (method, path)
            wrong = auditor_token if path != "/audit" else admin_token
            assert (await client.request(**request, headers=bearer(wrong))).status_code == 403
            right = admin_token if path != "/audit" else auditor_token
            status = (await client.request(**request, headers=bearer(right))).status_code
            assert status not in (401, 403) and status < 500, (method, path, status)
