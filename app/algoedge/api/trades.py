"""Routes: the user's trades, newest first."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field, ValidationInfo, field_validator

from algoedge.api.io import (
    PageQuery,
    Timestamp,
    decode_time_cursor,
    page,
    read_query,
    render,
    time_cursor,
)
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, USER
from algoedge.db import accounts, trades


class TradesQuery(PageQuery):
    account_id: int | None = Field(default=None, ge=1, le=2**62)
    since: Timestamp | None = None
    until: Timestamp | None = None

    @field_validator("until")
    @classmethod
    def _after_since(cls, until: Timestamp | None, info: ValidationInfo) -> Timestamp | None:
        since = info.data.get("since")
        if since is not None and until is not None and until <= since:
            raise ValueError("must be later than since")
        return until


async def list_(request: web.Request) -> web.Response:
    query = read_query(request, TradesQuery)
    db, user = request.app[DATABASE], request[USER]
    if query.account_id is not None:
        # Someone else's account is a 404, exactly like one that does not exist.
        await accounts.get_account(db, user_id=user.id, account_id=query.account_id)
    rows = await trades.list_trades(
        db,
        user_id=user.id,
        account_id=query.account_id,
        since=query.since,
        until=query.until,
        before=decode_time_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return render(page(rows, limit=query.limit, cursor_of=time_cursor))


ROUTES = (
    Route(
        "GET",
        "/api/v1/trades",
        list_,
        summary="My trades, newest first",
        responses={200: ("OK", "TradePage")},
        query=TradesQuery,
        not_found=True,  # account_id of an account that is not the caller's
    ),
)
