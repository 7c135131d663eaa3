"""Routes: the user's in-app notifications, newest first, and marking one read."""

from __future__ import annotations

from aiohttp import web

from algoedge.api.io import (
    PageQuery,
    QueryBool,
    decode_time_cursor,
    page,
    path_id,
    read_query,
    render,
    time_cursor,
)
from algoedge.api.routes import Route
from algoedge.api.state import DATABASE, USER
from algoedge.db import notifications


class NotificationsQuery(PageQuery):
    #: true: only the unread ones; false: only the read ones; left out: all.
    unread: QueryBool | None = None


async def list_(request: web.Request) -> web.Response:
    query = read_query(request, NotificationsQuery)
    rows = await notifications.list_notifications(
        request.app[DATABASE],
        user_id=request[USER].id,
        unread=query.unread,
        before=decode_time_cursor(query.cursor),
        limit=query.limit + 1,
    )
    return render(page(rows, limit=query.limit, cursor_of=time_cursor))


async def mark_read(request: web.Request) -> web.Response:
    await notifications.mark_read(
        request.app[DATABASE],
        user_id=request[USER].id,
        notification_id=path_id(request, "notification_id"),
    )
    return web.Response(status=204)


ROUTES = (
    Route(
        "GET",
        "/api/v1/notifications",
        list_,
        summary="My notifications, newest first (unread=true: unread only; false: read only)",
        responses={200: ("OK", "NotificationPage")},
        query=NotificationsQuery,
    ),
    Route(
        "POST",
        "/api/v1/notifications/{notification_id}/read",
        mark_read,
        summary="Mark one of my notifications read (again: keeps the first time)",
        responses={204: ("Read", None)},
    ),
)
