"""Routes: register (which queues the welcome e-mail), log in, log out."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, field_validator

from algoedge.api.io import NO_NUL, StrictModel, read_json, render
from algoedge.api.routes import Route
from algoedge.api.state import CLAIMS, DATABASE, JOBS, SESSIONS
from algoedge.auth import hash_password
from algoedge.db import users

# Deliberately loose (one @, a dot in the domain): the confirmation mail is the real check.
EMAIL_PATTERN = r"^[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]{2,}$"


class Email(StrictModel):
    email: str = Field(min_length=6, max_length=320, pattern=EMAIL_PATTERN)

    @field_validator("email")
    @classmethod
    def _lower_case(cls, value: str) -> str:
        return value.lower()


class RegisterIn(Email):
    password: str = Field(min_length=8, max_length=256, pattern=NO_NUL)
    name: str = Field(min_length=1, max_length=200, pattern=NO_NUL)


class LoginIn(Email):
    password: str = Field(min_length=1, max_length=256, pattern=NO_NUL)


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterIn)
    db = request.app[DATABASE]
    created = await users.create_user(
        db, email=body.email, name=body.name, password_hash=await hash_password(body.password)
    )
    # The delivery is recorded with the user: when Redis cannot take the task now, the sweeper
    # enqueues it later, so the registration succeeds either way. The API never speaks SMTP.
    if await request.app[JOBS].send_email(created.welcome_delivery_id):
        await users.mark_email_enqueued(db, created.welcome_delivery_id)
    user = created.user
    return render({"id": user.id, "email": user.email, "name": user.name}, status=201)


async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginIn)
    token = await request.app[SESSIONS].login(body.email, body.password)
    return render(
        {
            "access_token": token.token,
            "token_type": "bearer",
            "expires_in": request.app[SESSIONS].token_ttl,
        }
    )


async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].logout(request[CLAIMS])
    return web.Response(status=204)


ROUTES = (
    Route(
        "POST",
        "/api/v1/auth/register",
        register,
        summary="Create a user",
        responses={201: ("Created", "User"), 409: ("Email taken", "Problem")},
        auth="public",
        rate="auth",
        body=RegisterIn,
    ),
    Route(
        "POST",
        "/api/v1/auth/login",
        login,
        summary="Get an access token",
        responses={200: ("OK", "Token"), 401: ("Wrong email or password", "Problem")},
        auth="public",
        rate="auth",
        body=LoginIn,
    ),
    Route(
        "POST",
        "/api/v1/auth/logout",
        logout,
        summary="End this token's session",
        responses={204: ("Logged out", None)},
    ),
)
