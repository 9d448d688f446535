"""The web application's pages and files, sign-in, and the city's reference data.

Pages and assets are public (they hold no data); every data route needs a token, which the
page obtains by signing in here (the identity service's password grant, passed through) and
renews with the refresh token that came with it, so the page never keeps the password.
"""

from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import MediaType, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from msgspec import Meta

from cityos_contracts.identity import Principal
from cityos_kit.auth import PUBLIC, InvalidToken, current_principal, security
from cityos_kit.city import City
from cityos_maps.api.common import upstreams
from cityos_maps.board import GROUP_EN
from cityos_maps.upstream import UpstreamError

PAGES = {"/": "index.html", "/console": "console.html", "/field": "field.html"}
# Hashed asset names never change content: cache them for long; pages always revalidate.
NO_CACHE = {"Cache-Control": "no-cache"}


class SignIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=200)]
    password: Annotated[str, Meta(min_length=1, max_length=256)]


class Renewal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=512)]


def profile(principal: Principal) -> dict[str, Any]:
    return {"sub": principal.sub, "name": principal.name or principal.sub,
            "unit": principal.unit, "department": principal.department,
            "roles": list(principal.roles), "scopes": list(principal.scopes),
            "sees_all": principal.sees_all_units(),
            "expires_at": principal.expires_at.isoformat() if principal.expires_at else None}


def page_routes(static: Path) -> list[ControllerRouterHandler]:
    def page(path: str, filename: str) -> ControllerRouterHandler:
        @get(path, opt=PUBLIC, include_in_schema=False, name=f"page:{filename}",
             media_type=MediaType.HTML, sync_to_thread=False)
        def serve() -> Response[bytes]:
            target = static / filename
            if not target.exists():
                raise NotFoundException(detail=f"{filename} is not built (npm run build in "
                                               "services/maps/web)")
            return Response(target.read_bytes(), media_type=MediaType.HTML, headers=NO_CACHE)
        return serve

    assets = create_static_files_router(
        path="/assets", directories=[static / "assets"], opt=PUBLIC, name="assets",
        include_in_schema=False)
    return [*(page(p, f) for p, f in PAGES.items()), assets]


@post("/api/session", opt=PUBLIC, tags=["session"], status_code=200)
async def sign_in(data: SignIn, state: State, request: Request[Any, Any, Any]
                  ) -> dict[str, Any]:
    """Sign in with a username and password (the identity service's password grant); answers
    the access token, the refresh token to renew it with, and who it is for."""
    return await _session(request, state, {"grant_type": "password",
                                           "username": data.username,
                                           "password": data.password}, "sign-in")


@post("/api/session/refresh", opt=PUBLIC, tags=["session"], status_code=200)
async def renew(data: Renewal, state: State, request: Request[Any, Any, Any]
                ) -> dict[str, Any]:
    """A new access token for the refresh token (which is used up: the answer carries the
    next one). A refresh token used twice ends the sign-in."""
    return await _session(request, state, {"grant_type": "refresh_token",
                                           "refresh_token": data.refresh_token}, "renewal")


@post("/api/session/end", opt=PUBLIC, tags=["session"], status_code=204)
async def sign_out(data: Renewal, state: State) -> None:
    """Sign out: the identity service revokes the refresh token, its sign-in and the access
    token issued with it."""
    await upstreams(state).call("identity", "POST", "/oauth/revoke",
                                data={"token": data.refresh_token,
                                      "token_type_hint": "refresh_token"})


async def _session(request: Request[Any, Any, Any], state: State, form: dict[str, str],
                   what: str) -> dict[str, Any]:
    try:
        answer = await upstreams(state).call("identity", "POST", "/oauth/token", data=form)
    except UpstreamError as exc:
        raise NotAuthorizedException(detail=f"{what} refused: {exc.detail}") from exc
    token = str(answer["access_token"])
    try:
        principal = await security(request.app).verifier.verify(token)
    except InvalidToken as exc:
        raise NotAuthorizedException(detail=f"the issued token is not trusted here: {exc}") from exc
    return {"access_token": token, "expires_in": answer.get("expires_in"),
            "refresh_token": answer.get("refresh_token"),
            "refresh_expires_in": answer.get("refresh_expires_in"), "user": profile(principal)}


@get("/api/me", opt=PUBLIC, tags=["session"])
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Who the bearer token is for (401 without a valid one)."""
    return profile(current_principal(request))


@get("/api/city", opt=PUBLIC, tags=["city"], sync_to_thread=False)
def city_data(state: State) -> Response[bytes]:
    """The city's own reference data: divisions (GeoJSON), categories, units, departments."""
    encoded: bytes = state.city_json
    return Response(encoded, media_type="application/json",
                    headers={"Cache-Control": "max-age=300"})


def encode_city(city: City) -> bytes:
    bbox = city.bbox
    return msgspec.json.encode({
        "divisions": city.divisions, "categories": city.categories, "units": city.units,
        "departments": list(city.departments.values()), "groups_en": GROUP_EN,
        "bbox": [bbox.west, bbox.south, bbox.east, bbox.north]})


ROUTES: list[ControllerRouterHandler] = [sign_in, renew, sign_out, me, city_data]
