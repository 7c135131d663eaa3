"""Real-time events over socket.io 5, delivered to a user on whichever API pod they are connected to.

Two ways in, one way out:
- API processes emit through ``AsyncRedisManager`` (channel ``algoedge:socketio``): every pod
  receives the emit and delivers it to its own sockets in the user's room ``user:<id>``.
- Processes without python-socketio 5 (Celery workers; the bridge, pinned to socket.io 4) call
  :func:`algoedge.events.publish_event`, which PUBLISHes JSON on ``algoedge:events``; every API pod relays what it
  receives to its local sockets only (``ignore_queue``), so nothing is delivered twice.
The websocket transport is the default so no sticky sessions are needed; polling can be enabled
(ALGOEDGE_SOCKETIO_TRANSPORTS) but then the load balancer must pin clients to a pod.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.auth import AuthError
from algoedge.cache import CachedUser
from algoedge.events import publish_event
from algoedge.keys import EVENTS_CHANNEL, SOCKETIO_CHANNEL
from algoedge.metrics import EVENTS_RELAYED, SOCKETS_CONNECTED

log = logging.getLogger(__name__)

__all__ = ["create_server", "emit_to_user", "publish_event", "relay_events", "user_room"]

NAMESPACE = "/"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def create_server(
    *,
    redis_url: str,
    transports: list[str],
    allowed_origins: tuple[str, ...],
    authenticate: Callable[[str], Awaitable[CachedUser]],
) -> socketio.AsyncServer:
    """A socket.io server whose connections must present a live access token.

    With ``allowed_origins`` set, engine.io refuses a connection whose Origin header is not in
    it (clients that send none, i.e. not browsers, still connect). Unset, Origin is not checked:
    the token in the connect payload, never a cookie, is what a foreign page would lack.
    """
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url, channel=SOCKETIO_CHANNEL),
        transports=transports,
        cors_allowed_origins=list(allowed_origins),
        logger=False,
        engineio_logger=False,
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("an access token is required")
        try:
            user = await authenticate(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        await sio.save_session(sid, {"user_id": user.id})
        await sio.enter_room(sid, user_room(user.id))
        SOCKETS_CONNECTED.inc()

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, *args: Any) -> None:
        # Only sockets that got past connect() were counted (and have a session).
        try:
            session = await sio.get_session(sid)
        except KeyError:
            return
        if session.get("user_id") is not None:
            SOCKETS_CONNECTED.dec()

    return sio


async def emit_to_user(sio: socketio.AsyncServer, user_id: int, event: str, data: Any) -> None:
    """From an API process: deliver ``event`` to every socket of ``user_id`` on every pod."""
    await sio.emit(event, data, room=user_room(user_id), namespace=NAMESPACE)


async def relay_events(sio: socketio.AsyncServer, redis_url: str) -> None:
    """Forward ``algoedge:events`` messages to this pod's sockets until cancelled; survives Redis restarts."""
    # Its own client: a subscription waits for messages indefinitely, which the request path's
    # short socket timeout would cut every second.
    redis = Redis.from_url(
        redis_url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=15,
    )
    try:
        await _relay_forever(sio, redis)
    finally:
        await redis.aclose()


async def _relay_forever(sio: socketio.AsyncServer, redis: Redis) -> None:
    delay = 0.5
    while True:
        try:
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(EVENTS_CHANNEL)
                delay = 0.5
                async for message in pubsub.listen():
                    await _relay_one(sio, message.get("data"))
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("event relay lost Redis (%r); resubscribing in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _relay_one(sio: socketio.AsyncServer, raw: Any) -> None:
    try:
        message = json.loads(raw)
        user_id, event = int(message["user_id"]), str(message["event"])
    except (TypeError, ValueError, KeyError):
        log.warning("dropping malformed event on %s", EVENTS_CHANNEL)
        return
    await sio.emit(
        event, message.get("data"), room=user_room(user_id), namespace=NAMESPACE, ignore_queue=True
    )
    EVENTS_RELAYED.inc()
