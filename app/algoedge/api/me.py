"""Routes: the signed-in user and their profile settings."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import ConfigDict, Field, StrictBool, TypeAdapter, WithJsonSchema, model_validator

from algoedge.api.io import NO_NUL, NOT_NULL, StrictModel, omitted, read_json, render
from algoedge.api.routes import Route
from algoedge.api.state import SESSIONS, USER
from algoedge.cache import CachedUser

UserName = Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]


class MePatch(StrictModel):
    # Each field may be left out (it stays as it is) but not sent as null; one at least is given.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    name: Annotated[
        UserName | None, NOT_NULL, WithJsonSchema(TypeAdapter(UserName).json_schema())
    ] = omitted()
    #: Whether the user's reports are e-mailed to them when ready.
    email_reports: Annotated[StrictBool | None, NOT_NULL, WithJsonSchema({"type": "boolean"})] = (
        omitted()
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> MePatch:
        if self.name is None and self.email_reports is None:
            raise ValueError("give at least one of name, email_reports")
        return self


def _user(user: CachedUser) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "email_reports": user.email_reports,
    }


async def get_me(request: web.Request) -> web.Response:
    return render(_user(request[USER]))


async def patch_me(request: web.Request) -> web.Response:
    body = await read_json(request, MePatch)
    updated = await request.app[SESSIONS].update_profile(
        request[USER].id, name=body.name, email_reports=body.email_reports
    )
    return render(_user(updated))


ROUTES = (
    Route("GET", "/api/v1/me", get_me, summary="The signed-in user", responses={200: ("OK", "Me")}),
    Route(
        "PATCH",
        "/api/v1/me",
        patch_me,
        summary="Rename the signed-in user or change their settings",
        responses={200: ("OK", "Me")},
        body=MePatch,
    ),
)
