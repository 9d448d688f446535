"""What every route module shares: the caller's raw token and the service's state."""

from typing import Any

from litestar import Request
from litestar.datastructures import State

from cityos_kit.auth import current_principal
from cityos_maps.upstream import Upstreams


def token_of(request: Request[Any, Any, Any]) -> str:
    """The caller's bearer token (verified by the kit's middleware), to call on their behalf."""
    current_principal(request)  # 401 unless signed in
    header = request.headers.get("authorization", "")
    return header.partition(" ")[2].strip()


def upstreams(state: State) -> Upstreams:
    value: Upstreams = state.upstreams
    return value
