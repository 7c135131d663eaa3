"""Routes: register (which queues the welcome e-mail, or a notice to a taken e-mail's owner), log
in, log out."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, field_validator

from algoedge.api.io import NO_NUL, StrictModel, read_json, render
from algoedge.api.middleware import client_network_of
from algoedge.api.routes import Route
from algoedge.api.state import CLAIMS, DATABASE, JOBS, PASSWORDS, SESSIONS, SOCKETS
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


#: The one answer to every registration, new e-mail or taken: it must not say which.
REGISTERED = "If this address can be registered, it has been; a message is on its way to it."


async def register(request: web.Request) -> web.Response:
    body = await read_json(request, RegisterIn)
    db = request.app[DATABASE]
    # Hashed whether or not the e-mail is taken, so the time taken does not tell either.
    password_hash = await request.app[PASSWORDS].hash(body.password)
    registration = await users.register_user(
        db, email=body.email, name=body.name, password_hash=password_hash
    )
    # The delivery is recorded with the user: when Redis cannot take the task now, the sweeper
    # enqueues it later, so the registration succeeds either way. The API never speaks SMTP.
    delivery = registration.delivery_id
    if delivery is not None and await request.app[JOBS].send_email(delivery):
        await users.mark_email_enqueued(db, delivery)
    return render({"email": body.email, "message": REGISTERED}, status=202)


async def login(request: web.Request) -> web.Response:
    body = await read_json(request, LoginIn)
    token = await request.app[SESSIONS].login(
        body.email, body.password, network=client_network_of(request)
    )
    return render(
        {
            "access_token": token.token,
            "token_type": "bearer",
            "expires_in": request.app[SESSIONS].token_ttl,
        }
    )


async def logout(request: web.Request) -> web.Response:
    claims = request[CLAIMS]
    await request.app[SESSIONS].logout(claims)
    # The session's sockets close too, on every pod (after the revocation, which they check).
    request.app[SOCKETS].end_session(claims.jti)
    return web.Response(status=204)


ROUTES = (
    Route(
        "POST",
        "/api/v1/auth/register",
        register,
        summary="Create a user (the same answer whether or not the e-mail is taken)",
        responses={
            202: ("Accepted: the address gets a welcome, or its owner a notice", "Registered"),
            503: ("Every password-hashing slot is busy; see Retry-After", "Problem"),
        },
        auth="public",
        rate="auth",
        body=RegisterIn,
    ),
    Route(
        "POST",
        "/api/v1/auth/login",
        login,
        summary="Get an access token",
        responses={
            200: ("OK", "Token"),
            401: ("Wrong email or password", "Problem"),
            503: ("Every password-hashing slot is busy; see Retry-After", "Problem"),
        },
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
