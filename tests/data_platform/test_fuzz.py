"""Schemathesis fuzzing of ingestion and the spatio-temporal API as the command center's data
steward: no 5xx, every 4xx with a reason."""

from typing import Any

from data_platform.conftest import STEWARD_SCOPES
from fuzzing import fuzz

from cityos_kit.auth import LocalIssuer


async def test_data_platform_apis_fuzz(ingestion: Any, spatiotemporal: Any, issuer: LocalIssuer,
                                       gps_dataset: dict[str, Any]) -> None:
    token = issuer.token(unit="CMD", scopes=STEWARD_SCOPES)
    for client in (ingestion, spatiotemporal):
        failures, statuses = await fuzz(client, lambda case: token, max_examples=10)
        assert failures == [], failures
        assert any(key.endswith(" 200") for key in statuses), statuses
