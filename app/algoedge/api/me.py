"""Routes: the signed-in user."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from algoedge.api.io import NO_NUL, StrictModel, read_json, render
from algoedge.api.state import SESSIONS, USER
from algoedge.cache import CachedUser


class MePatch(StrictModel):
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


def _user(user: CachedUser) -> dict[str, object]:
    return {"id": user.id, "email": user.email, "name": user.name}


async def get_me(request: web.Request) -> web.Response:
    return render(_user(request[USER]))


async def patch_me(request: web.Request) -> web.Response:
    body = await read_json(request, MePatch)
    return render(_user(await request.app[SESSIONS].rename(request[USER].id, body.name)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/me", get_me)
    app.router.add_patch("/api/v1/me", patch_me)
