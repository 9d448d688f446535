"""The spatio-temporal entity listing, read page after page: a city's declared trips or
enterprises outgrow one page (the listing returns at most 10,000 entities a call)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cityos_hazchem.app import Upstream

PAGE = 10_000


async def listing(up: Upstream, dataset: str, at: datetime, token: str | None,
                  page: int = PAGE) -> list[dict[str, Any]]:
    """Every entity of `dataset` as it was at `at`, as GeoJSON features (in id order)."""
    features: list[dict[str, Any]] = []
    params = {"at": at.isoformat(), "limit": str(page)}
    while True:
        got = (await up("GET", f"/datasets/{dataset}/entities", None, params, token))["features"]
        features += got
        if len(got) < page:
            return features
        params = {**params, "after": str(got[-1]["properties"]["entity_id"])}
