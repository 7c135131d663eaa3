"""Routes: the user's linked MetaTrader accounts (the bridge's demand).

Linking, editing and unlinking each wake the bridge (it also polls); an edit is also how a user
has a ``failed`` account tried again, since the bridge never retries one by itself.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from algoedge.api.io import (
    NO_NUL,
    NOT_NULL,
    PageQuery,
    StrictModel,
    decode_id_cursor,
    encode_cursor,
    omitted,
    page,
    path_id,
    read_json,
    read_query,
    render,
)
from algoedge.api.routes import Route
from algoedge.api.state import BRIDGE_WAKE, CIPHER, DATABASE, SETTINGS, SOCKETS, USER
from algoedge.db import accounts
from algoedge.db.accounts import ACCOUNT_STATUS_EVENT, account_status


def _login_text(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    return value


# The broker's server name as MetaTrader shows it: no NUL, no whitespace at either end.
Server = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[^\s\x00]([^\x00]*[^\s\x00])?$")
]
Password = Annotated[str, Field(min_length=1, max_length=128, pattern=NO_NUL)]


class AccountIn(StrictModel):
    # MetaTrader logins are numbers; clients may send them as JSON numbers or digit strings.
    login: Annotated[
        str,
        BeforeValidator(_login_text),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "pattern": "^[0-9]{1,20}$"},
                    {"type": "integer", "minimum": 1, "maximum": 99_999_999_999_999_999_999},
                ],
                "description": "The account's numeric MetaTrader login",
            }
        ),
    ] = Field(pattern=r"^[0-9]{1,20}$")
    server: Server
    password: Password
    platform: Literal["mt4", "mt5"] = "mt5"


class AccountPatch(StrictModel):
    """New credentials: a field left out stays as it is; one at least is given."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    password: Annotated[
        Password | None, NOT_NULL, WithJsonSchema(TypeAdapter(Password).json_schema())
    ] = omitted()
    server: Annotated[
        Server | None, NOT_NULL, WithJsonSchema(TypeAdapter(Server).json_schema())
    ] = omitted()

    @model_validator(mode="after")
    def _at_least_one(self) -> AccountPatch:
        if self.password is None and self.server is None:
            raise ValueError("give at least one of password, server")
        return self


async def link(request: web.Request) -> web.Response:
    body = await read_json(request, AccountIn)
    user = request[USER]
    account = await accounts.link_account(
        request.app[DATABASE],
        user_id=user.id,
        login=body.login,
        server=body.server,
        platform=body.platform,
        encrypted_password=request.app[CIPHER].encrypt(body.password),
        limit=request.app[SETTINGS].accounts_per_user,
    )
    request.app[SOCKETS].emit_to_user(user.id, "account.linked", {"id": account.id})
    request.app[BRIDGE_WAKE].account_changed(account.id)
    return render(account, status=201, headers={"Location": f"/api/v1/accounts/{account.id}"})


async def list_(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    rows = await accounts.list_accounts(
        request.app[DATABASE],
        user_id=request[USER].id,
        after_id=decode_id_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return render(page(rows, limit=query.limit, cursor_of=lambda a: encode_cursor(a.id)))


async def get(request: web.Request) -> web.Response:
    return render(
        await accounts.get_account(
            request.app[DATABASE],
            user_id=request[USER].id,
            account_id=path_id(request, "account_id"),
        )
    )


async def edit(request: web.Request) -> web.Response:
    body = await read_json(request, AccountPatch)
    user = request[USER]
    password = None if body.password is None else request.app[CIPHER].encrypt(body.password)
    account = await accounts.edit_credentials(
        request.app[DATABASE],
        user_id=user.id,
        account_id=path_id(request, "account_id"),
        server=body.server,
        encrypted_password=password,
    )
    request.app[SOCKETS].emit_to_user(
        user.id, ACCOUNT_STATUS_EVENT, account_status(account.id, account.connection)
    )
    request.app[BRIDGE_WAKE].account_changed(account.id)
    return render(account)


async def unlink(request: web.Request) -> web.Response:
    account_id = path_id(request, "account_id")
    await accounts.unlink_account(
        request.app[DATABASE], user_id=request[USER].id, account_id=account_id
    )
    request.app[BRIDGE_WAKE].account_changed(account_id)
    return web.Response(status=204)


ROUTES = (
    Route(
        "POST",
        "/api/v1/accounts",
        link,
        summary="Link a MetaTrader account",
        responses={
            201: ("Linked", "MtAccount"),
            409: ("Already linked, or the user has ALGOEDGE_ACCOUNTS_PER_USER accounts", "Problem"),
        },
        body=AccountIn,
    ),
    Route(
        "GET",
        "/api/v1/accounts",
        list_,
        summary="My linked accounts",
        responses={200: ("OK", "AccountPage")},
        query=PageQuery,
    ),
    Route(
        "GET",
        "/api/v1/accounts/{account_id}",
        get,
        summary="One of my accounts",
        responses={200: ("OK", "MtAccount")},
    ),
    Route(
        "PATCH",
        "/api/v1/accounts/{account_id}",
        edit,
        summary="Change an account's password or server; its connection starts over",
        responses={
            200: ("Edited; the connection is pending again", "MtAccount"),
            409: ("Already linked on that server", "Problem"),
        },
        body=AccountPatch,
    ),
    Route(
        "DELETE",
        "/api/v1/accounts/{account_id}",
        unlink,
        summary="Unlink one of my accounts (its trades go too)",
        responses={204: ("Unlinked", None)},
    ),
)
