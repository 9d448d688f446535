"""Schemathesis fuzzing of the identity API as an authenticated administrator: no 5xx.

Schemathesis generates the requests (in a worker thread: hypothesis is synchronous); they are
sent through the test client on the test loop, where the app and its database pool live.
"""

import asyncio
from collections import Counter
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from litestar import Litestar
from litestar.testing import AsyncTestClient

from .conftest import ISSUER, bearer

MAX_EXAMPLES = 15
REQUESTS_KEYS = ("method", "url", "headers", "params", "json", "files")


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """requests-style transport kwargs → httpx's (raw bodies go in `content`)."""
    mapped = {k: v for k, v in kwargs.items() if k in REQUESTS_KEYS and v is not None}
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        mapped["content"] = data
    elif data is not None:
        mapped["data"] = data
    return mapped


def _fuzz(schema_doc: dict[str, Any], send: Any, tokens: dict[str, str],
          statuses: Counter[str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(schema_doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                             phases=[Phase.explicit, Phase.generate],
                             suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            token = tokens["audit" if case.path.startswith("/audit") else "admin"]
            kwargs = case.as_transport_kwargs(base_url=ISSUER, headers=bearer(token))
            response = send(_httpx_kwargs(kwargs))
            label = f"{case.method} {case.formatted_path}"
            statuses[f"{case.method} {case.path} {response.status_code}"] += 1
            if response.status_code >= 500:
                failures.append(f"{label} -> {response.status_code}: {response.text[:300]}")
            elif response.status_code >= 400:
                # Every error is a clear answer: JSON saying what is wrong.
                body = response.json()
                if not (body.get("detail") or body.get("error")):
                    failures.append(f"{label} -> {response.status_code} without a reason")

        check()
    return failures


async def test_identity_api_fuzz(client: AsyncTestClient[Litestar], admin_token: str,
                                 auditor_token: str) -> None:
    loop = asyncio.get_running_loop()
    schema_doc = (await client.get("/docs/openapi.json")).json()

    def send(kwargs: dict[str, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(client.request(**kwargs), loop).result(30)

    statuses: Counter[str] = Counter()
    failures = await asyncio.wait_for(
        asyncio.to_thread(_fuzz, schema_doc, send,
                          {"admin": admin_token, "audit": auditor_token}, statuses), timeout=120)
    assert failures == []
    # The fuzzing reached the handlers, not only the validation layer.
    assert statuses["GET /clients 200"] and statuses["POST /oauth/token 400"]
    assert statuses["GET /audit 200"]
