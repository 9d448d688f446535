"""Schemathesis fuzzing of the identity API as an authenticated administrator: no 5xx."""

from typing import Any

from fuzzing import fuzz
from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_identity_api_fuzz(client: AsyncTestClient[Litestar], admin_token: str,
                                 auditor_token: str) -> None:
    def token_for(case: Any) -> str:
        return auditor_token if case.path.startswith("/audit") else admin_token

    failures, statuses = await fuzz(client, token_for)
    assert failures == []
    # The fuzzing reached the handlers, not only the validation layer.
    assert statuses["GET /clients 200"] and statuses["POST /oauth/token 400"]
    assert statuses["GET /audit 200"]
