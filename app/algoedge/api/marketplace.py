"""Routes: the bot marketplace, signal providers, signals, subscriptions and follows."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from algoedge.api.io import (
    PageQuery,
    StrictModel,
    Timestamp,
    decode_id_cursor,
    decode_time_cursor,
    encode_cursor,
    page,
    path_id,
    read_json,
    read_query,
    render,
    render_encoded,
    time_cursor,
)
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, LISTINGS, USER
from algoedge.db import marketplace
from algoedge.db.errors import NotFound


class BotsQuery(PageQuery):
    status: Literal["active", "paused", "retired"] | None = None


class SignalsQuery(PageQuery):
    provider_id: int | None = Field(default=None, ge=1, le=2**62)
    since: Timestamp | None = None


class SubscribeIn(StrictModel):
    account_id: int | None = Field(default=None, ge=1, le=2**62)


async def list_bots(request: web.Request) -> web.Response:
    query = read_query(request, BotsQuery)
    after = decode_id_cursor(query.cursor)

    async def load() -> dict[str, object]:
        rows = await marketplace.list_bots(
            request.app[DATABASE], status=query.status, after_id=after, limit=query.limit + 1
        )
        return page(rows, limit=query.limit, cursor_of=lambda b: encode_cursor(b.id))

    name = f"bots:{query.status or 'all'}:{after or 0}:{query.limit}"
    return render_encoded(await request.app[LISTINGS].get(name, load))


async def get_bot(request: web.Request) -> web.Response:
    return render(await marketplace.get_bot(request.app[DATABASE], path_id(request, "bot_id")))


async def subscribe(request: web.Request) -> web.Response:
    body = await read_json(request, SubscribeIn, optional=True)
    bot_id = path_id(request, "bot_id")
    subscription_id, created = await marketplace.subscribe(
        request.app[DATABASE], user_id=request[USER].id, bot_id=bot_id, account_id=body.account_id
    )
    return render(
        {"id": subscription_id, "bot_id": bot_id, "account_id": body.account_id},
        status=201 if created else 200,
    )


async def list_providers(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    after = decode_id_cursor(query.cursor)

    async def load() -> dict[str, object]:
        rows = await marketplace.list_providers(
            request.app[DATABASE], after_id=after, limit=query.limit + 1
        )
        return page(rows, limit=query.limit, cursor_of=lambda p: encode_cursor(p.id))

    return render_encoded(
        await request.app[LISTINGS].get(f"providers:{after or 0}:{query.limit}", load)
    )


async def follow(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id")
    follow_id, created = await marketplace.follow(
        request.app[DATABASE], user_id=request[USER].id, provider_id=provider_id
    )
    return render({"id": follow_id, "provider_id": provider_id}, status=201 if created else 200)


async def list_signals(request: web.Request) -> web.Response:
    query = read_query(request, SignalsQuery)
    db = request.app[DATABASE]
    if query.provider_id is not None and not await marketplace.provider_exists(
        db, query.provider_id
    ):
        raise NotFound(f"provider {query.provider_id}")
    rows = await marketplace.list_signals(
        db,
        user_id=request[USER].id,
        provider_id=query.provider_id,
        since=query.since,
        before=decode_time_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return render(page(rows, limit=query.limit, cursor_of=time_cursor))


# The catalogue (bots, providers) is public, so visitors can browse it before registering.
ROUTES = (
    Route(
        "GET",
        "/api/v1/bots",
        list_bots,
        summary="The bot marketplace",
        responses={200: ("OK", "BotPage")},
        auth="public",
        query=BotsQuery,
    ),
    Route(
        "GET",
        "/api/v1/bots/{bot_id}",
        get_bot,
        summary="One bot",
        responses={200: ("OK", "Bot")},
        auth="public",
    ),
    Route(
        "POST",
        "/api/v1/bots/{bot_id}/subscribe",
        subscribe,
        summary="Subscribe to an active bot",
        responses={
            200: ("Already subscribed", "Subscription"),
            201: ("Subscribed", "Subscription"),
        },
        body=SubscribeIn,
        body_required=False,
    ),
    Route(
        "GET",
        "/api/v1/providers",
        list_providers,
        summary="Signal providers",
        responses={200: ("OK", "ProviderPage")},
        auth="public",
        query=PageQuery,
    ),
    Route(
        "POST",
        "/api/v1/providers/{provider_id}/follow",
        follow,
        summary="Follow a provider",
        responses={200: ("Already following", "Follow"), 201: ("Following", "Follow")},
    ),
    Route(
        "GET",
        "/api/v1/signals",
        list_signals,
        summary="Signals of one provider, or of those I follow",
        responses={200: ("OK", "SignalPage")},
        query=SignalsQuery,
        not_found=True,  # provider_id of no active provider
    ),
)
