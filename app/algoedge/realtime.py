"""Real-time events over socket.io 5: who may hold a socket, for how long, and what it receives.

Two ways in, one way out:
- API processes emit through ``AsyncRedisManager`` (channel ``algoedge:socketio``): every pod
  receives the emit and delivers it to its own sockets in the user's room ``user:<id>``. The
  emit is queued in the process's :class:`~algoedge.outbox.Outbox`, never sent on the request
  path, so a slow Redis cannot hold a request.
- Processes without python-socketio 5 (Celery workers; the bridge, pinned to socket.io 4) call
  :func:`algoedge.events.publish_event`, which PUBLISHes JSON on ``algoedge:events``; every API pod relays what it
  receives to its local sockets only (``ignore_queue``), so nothing is delivered twice.

A socket lives no longer than its session: a connection must send its CONNECT (with a live
token) within ``ALGOEDGE_SOCKETIO_CONNECT_TIMEOUT`` and gets one attempt; it is closed when its
token expires, when its session is logged out (the pod that logs out closes its own sockets and
announces the jti on ``algoedge:sessions:ended`` for the others), and, should that announcement
be lost, when a periodic check finds the session ended.

The websocket transport is the default so no sticky sessions are needed; polling can be enabled
(ALGOEDGE_SOCKETIO_TRANSPORTS) but then the load balancer must pin clients to a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, cast

import socketio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge.auth import AuthError, Claims
from algoedge.cache import CachedUser, client_options
from algoedge.cancellation import stop_tasks
from algoedge.db.errors import DATABASE_FAILURES
from algoedge.events import publish_event
from algoedge.keys import (
    API_SOCKETS_KEY,
    API_SOCKETS_REPORT_SECONDS,
    EVENTS_CHANNEL,
    SESSION_ENDED_CHANNEL,
    SOCKETIO_CHANNEL,
)
from algoedge.metrics import (
    EVENTS_RELAYED,
    REDIS_ERRORS,
    SOCKET_SESSION_CHECK_ERRORS,
    SOCKETS_CONNECTED,
    SOCKETS_DISCONNECTED,
)
from algoedge.outbox import Outbox

log = logging.getLogger(__name__)

__all__ = ["SessionLookup", "Sockets", "publish_event", "user_room"]

NAMESPACE: Final = "/"
DisconnectReason = Literal["connect_timeout", "session_ended", "expired"]

# Our marks on an engine.io connection's environ (the dict socket.io hands the connect handler).
_EIO_SID: Final = "algoedge.eio_sid"
_CONNECT_TRIED: Final = "algoedge.connect_tried"
_CONNECTED: Final = "algoedge.connected"
_WARNING_INTERVAL_SECONDS: Final = 30.0
_CLOSE_TIMEOUT_SECONDS: Final = 5.0
#: Sessions checked per Redis round trip by the periodic check (an MGET of twice as many keys).
_CHECK_CHUNK: Final = 500
#: How long start-up waits for Redis to confirm socket.io's subscription before serving anyway
#: (Redis is not required for readiness: docs/architecture.md).
SUBSCRIBE_WITHIN_SECONDS: Final = 5.0


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class SessionLookup(Protocol):
    """What the socket server needs of :class:`algoedge.auth.Sessions`."""

    def decode(self, token: str) -> Claims: ...

    async def user_of(self, claims: Claims) -> CachedUser: ...

    async def ended_among(self, sessions: Sequence[Claims]) -> list[str]: ...


async def _await_subscription(confirmed: asyncio.Event, what: str, within: float) -> None:
    """Wait at most ``within`` seconds for Redis to confirm a subscription; past that, a warning
    (the subscriber keeps retrying on its own, and the pod serves without it: Redis is not a
    readiness condition)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await confirmed.wait()
            return
    log.warning("%s not confirmed within %.0f s; it keeps retrying", what, within)


class _RedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """socket.io's Redis manager with the app's client options: a publish fails within the Redis
    timeout, while the subscription, on a client of its own, waits for messages indefinitely
    (one client for both would either hang publishes or cut the subscription every quiet
    second)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, channel=SOCKETIO_CHANNEL, redis_options=client_options())
        #: Set once Redis confirmed the subscription (and again after each resubscription).
        self.subscribed = asyncio.Event()

    def _redis_connect(self) -> None:
        super()._redis_connect()
        self._subscriber = Redis.from_url(self.redis_url, **client_options(subscriber=True))
        # The subscription's confirmation is let through to _redis_listen_with_retries (which
        # marks it); socket.io's own _listen passes on only messages.
        self.pubsub = self._subscriber.pubsub(ignore_subscribe_messages=False)

    async def _redis_listen_with_retries(self) -> AsyncIterator[dict[str, Any]]:
        async for message in super()._redis_listen_with_retries():
            if message.get("type") == "subscribe":
                self.subscribed.set()
            yield message

    async def start(self, *, within: float) -> None:
        """Subscribe now, not at the first socket (socket.io's default): an emit another pod
        publishes while the first socket connects would otherwise be lost to it. Waits at most
        ``within`` seconds for Redis to confirm; without Redis the listener keeps retrying."""
        self.initialize()
        await _await_subscription(self.subscribed, "socket.io's Redis subscription", within)

    async def stop(self) -> None:
        """Stop the listener and close its Redis clients (the publisher's and the subscriber's)."""
        listener: asyncio.Task[None] | None = getattr(self, "thread", None)
        if listener is not None:
            await stop_tasks([listener])
        # Each client exists once the listener (or a publish) connected.
        for client in ("pubsub", "_subscriber", "redis"):
            if hasattr(self, client):
                await getattr(self, client).aclose()


@dataclass
class _Socket:
    claims: Claims
    eio_sid: str
    expiry: asyncio.TimerHandle


@dataclass
class _Session:
    claims: Claims
    sids: set[str] = field(default_factory=set)


class Sockets:
    """This pod's socket.io server and the sockets it holds, by session.

    ``sessions`` and ``redis`` are called when first needed: the app opens them after the
    server (and its routes) exist.
    """

    def __init__(
        self,
        *,
        redis_url: str,
        transports: list[str],
        allowed_origins: tuple[str, ...],
        connect_timeout: float,
        outbox: Outbox,
        sessions: Callable[[], SessionLookup],
        redis: Callable[[], Redis],
    ) -> None:
        # With allowed_origins set, engine.io refuses a connection whose Origin header is not in
        # it (clients that send none, i.e. not browsers, still connect). Unset, Origin is not
        # checked: the token in the connect payload, never a cookie, is what a foreign page
        # would lack.
        self._manager = _RedisManager(redis_url)
        self.server = socketio.AsyncServer(
            async_mode="aiohttp",
            client_manager=self._manager,
            transports=transports,
            cors_allowed_origins=list(allowed_origins),
            logger=False,
            engineio_logger=False,
        )
        self._redis_url = redis_url
        self._connect_timeout = connect_timeout
        self._outbox = outbox
        self._sessions = sessions
        self._redis = redis
        self._sockets: dict[str, _Socket] = {}
        self._by_session: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._relay_task: asyncio.Task[None] | None = None
        #: Set once Redis confirmed the relay's subscription (and again after each resubscription).
        self._relay_subscribed = asyncio.Event()
        #: Set when this pod's socket count changed: report_count_forever writes it at once.
        self._count_changed = asyncio.Event()
        self._last_warning = -_WARNING_INTERVAL_SECONDS
        self.server.on("connect", self._on_connect)
        self.server.on("disconnect", self._on_disconnect)
        # The CONNECT deadline starts at the engine.io handshake, before socket.io sees anything:
        # wrap socket.io's own handler of it.
        eio_connect = self.server.eio.handlers["connect"]

        async def on_eio_connect(eio_sid: str, environ: dict[str, Any]) -> Any:
            self._start_connect_deadline(eio_sid, environ)
            return await eio_connect(eio_sid, environ)

        self.server.eio.on("connect", on_eio_connect)

    async def start(self, *, within: float = SUBSCRIBE_WITHIN_SECONDS) -> None:
        """Subscribe to socket.io's channel and start the event relay before this pod serves its
        first socket, waiting at most ``within`` seconds for each subscription (an event published
        while a socket connects to a pod not yet subscribed would be lost to that socket)."""
        self.server.manager_initialized = True  # so the first connection does not start another
        self._relay_task = asyncio.create_task(self.relay(), name="event-relay")
        await self._manager.start(within=within)
        await _await_subscription(self._relay_subscribed, "the event relay's subscription", within)

    async def stop(self) -> None:
        if self._relay_task is not None:
            await stop_tasks([self._relay_task])
            self._relay_task = None
        await self._manager.stop()

    # -- the outgoing side ------------------------------------------------------------------

    def emit_to_user(self, user_id: int, event: str, data: Any) -> None:
        """Deliver ``event`` to every socket of ``user_id`` on every pod; queued, never waits."""
        self._outbox.put(
            "emit",
            functools.partial(
                self.server.emit, event, data, room=user_room(user_id), namespace=NAMESPACE
            ),
        )

    def end_session(self, jti: str) -> None:
        """Close the sockets of an ended session: this pod's now, every other pod's through Redis.

        Never waits: neither for Redis (the announcement is queued) nor for a client."""
        self.close_session(jti, reason="session_ended")
        self._outbox.put(
            "session_end", functools.partial(self._redis().publish, SESSION_ENDED_CHANNEL, jti)
        )

    def close_session(self, jti: str, *, reason: DisconnectReason) -> None:
        """Close this pod's sockets of session ``jti``, each in a task of its own."""
        session = self._by_session.get(jti)
        for sid in list(session.sids if session else ()):
            self._spawn(self._close(sid, reason=reason))

    # -- connections ------------------------------------------------------------------------

    def _start_connect_deadline(self, eio_sid: str, environ: dict[str, Any]) -> None:
        environ[_EIO_SID] = eio_sid
        asyncio.get_running_loop().call_later(
            self._connect_timeout, self._connect_deadline_passed, eio_sid, environ
        )

    def _connect_deadline_passed(self, eio_sid: str, environ: dict[str, Any]) -> None:
        if environ.get(_CONNECTED) or eio_sid not in self.server.eio.sockets:
            return
        SOCKETS_DISCONNECTED.labels(reason="connect_timeout").inc()
        self._spawn(self._close_connection(eio_sid))

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        # One attempt per connection: a refused one is closed at the deadline, and cannot spend
        # it trying tokens.
        if environ.get(_CONNECT_TRIED):
            raise socketio.exceptions.ConnectionRefusedError("one CONNECT per connection")
        environ[_CONNECT_TRIED] = True
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise socketio.exceptions.ConnectionRefusedError("an access token is required")
        sessions = self._sessions()
        try:
            claims = sessions.decode(token)
            user = await sessions.user_of(claims)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        except DATABASE_FAILURES as exc:
            # Redis and Postgres both failing: refuse now rather than leave the client waiting.
            SOCKET_SESSION_CHECK_ERRORS.inc()
            self._warn("a socket's token could not be checked", exc)
            raise socketio.exceptions.ConnectionRefusedError(
                "the server cannot check the token now; try again later"
            ) from None
        environ[_CONNECTED] = True
        await self.server.enter_room(sid, user_room(user.id), namespace=NAMESPACE)
        self._register(sid, claims, eio_sid=environ[_EIO_SID])

    async def _on_disconnect(self, sid: str, *args: Any) -> None:
        # Only sockets that got past connect() were registered (and counted).
        socket = self._sockets.pop(sid, None)
        if socket is None:
            return
        socket.expiry.cancel()
        session = self._by_session.get(socket.claims.jti)
        if session is not None:
            session.sids.discard(sid)
            if not session.sids:
                del self._by_session[socket.claims.jti]
        SOCKETS_CONNECTED.dec()
        self._count_changed.set()

    def _register(self, sid: str, claims: Claims, *, eio_sid: str) -> None:
        seconds_left = (claims.expires_at - datetime.now(UTC)).total_seconds()
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, seconds_left), lambda: self._spawn(self._close(sid, reason="expired"))
        )
        self._sockets[sid] = _Socket(claims=claims, eio_sid=eio_sid, expiry=expiry)
        self._by_session.setdefault(claims.jti, _Session(claims)).sids.add(sid)
        SOCKETS_CONNECTED.inc()
        self._count_changed.set()

    async def _close(self, sid: str, *, reason: DisconnectReason) -> None:
        """Tell the client its namespace is gone (it does not reconnect then), then close the
        connection itself, so nothing of it stays open whatever the client does."""
        socket = self._sockets.get(sid)
        if socket is None:
            return
        SOCKETS_DISCONNECTED.labels(reason=reason).inc()
        await self.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        await self._close_connection(socket.eio_sid)

    async def _close_connection(self, eio_sid: str) -> None:
        # engine.io waits until the connection's queue is written: a client that stops reading
        # would hold this task for as long as its TCP connection lives. The connection is closed
        # either way; engine.io drops it from its table on its next round.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_SECONDS):
                await self.server.eio.disconnect(eio_sid)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- background tasks -------------------------------------------------------------------

    async def check_sessions_forever(self, interval: float) -> None:
        """Until cancelled, close the sockets of sessions that ended without this pod hearing of
        it (the announcement is best effort: Redis may have been unreachable from the pod that
        logged out)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_sessions()
            except Exception:  # a bug must not end the checks for the life of the pod
                SOCKET_SESSION_CHECK_ERRORS.inc()
                log.exception("checking the sessions of sockets failed unexpectedly")

    async def report_count_forever(
        self, process: str, *, interval: float = API_SOCKETS_REPORT_SECONDS
    ) -> None:
        """Until cancelled, keep this process's socket count in ``algoedge:api:sockets`` (field
        ``process``): at once after a change, else every ``interval`` so the entry stays fresh.
        The operator reads the sum through the capacity endpoint (``status.capacity``). The
        entry is removed when cancelled; a crashed process's goes stale and is ignored."""
        try:
            while True:
                self._count_changed.clear()
                await self._write_count(process)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._count_changed.wait(), interval)
        finally:
            with contextlib.suppress(RedisError, OSError):
                # redis-py types its commands for both clients; this one is the asyncio client.
                await cast("Awaitable[int]", self._redis().hdel(API_SOCKETS_KEY, process))

    async def _write_count(self, process: str) -> None:
        try:
            count = f"{len(self._sockets)} {int(time.time())}"
            await cast("Awaitable[int]", self._redis().hset(API_SOCKETS_KEY, process, count))
        except RedisError as exc:  # the next change or interval writes it again
            REDIS_ERRORS.labels(operation="socket_count").inc()
            self._warn("reporting this pod's socket count failed", exc)

    async def check_sessions(self, *, chunk: int = _CHECK_CHUNK) -> None:
        """Close the sockets of every session that ended, checking ``chunk`` sessions per Redis
        round trip (one ``MGET`` each, where one read per session took thousands)."""
        sessions = self._sessions()
        claims = [session.claims for session in self._by_session.values()]
        for start in range(0, len(claims), chunk):
            try:
                ended = await sessions.ended_among(claims[start : start + chunk])
            except DATABASE_FAILURES as exc:  # Redis and Postgres both failing: next round
                SOCKET_SESSION_CHECK_ERRORS.inc()
                self._warn("checking the sessions of sockets failed", exc)
                continue
            for jti in ended:
                self.close_session(jti, reason="session_ended")

    async def relay(self) -> None:
        """Forward ``algoedge:events`` to this pod's sockets and close the sockets of sessions
        announced on ``algoedge:sessions:ended``, until cancelled; survives Redis restarts."""
        redis = Redis.from_url(
            self._redis_url, decode_responses=True, **client_options(subscriber=True)
        )
        try:
            await self._relay_forever(redis)
        finally:
            await redis.aclose()

    async def _relay_forever(self, redis: Redis) -> None:
        delay = 0.5
        while True:
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL, SESSION_ENDED_CHANNEL)
                    self._relay_subscribed.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message.get("channel") == SESSION_ENDED_CHANNEL:
                            self.close_session(str(message.get("data")), reason="session_ended")
                        else:
                            await self._relay_one(message.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._relay_subscribed.clear()
                log.warning("event relay lost Redis (%r); resubscribing in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _relay_one(self, raw: Any) -> None:
        try:
            message = json.loads(raw)
            user_id, event = int(message["user_id"]), str(message["event"])
        except (TypeError, ValueError, KeyError):
            log.warning("dropping malformed event on %s", EVENTS_CHANNEL)
            return
        await self.server.emit(
            event,
            message.get("data"),
            room=user_room(user_id),
            namespace=NAMESPACE,
            ignore_queue=True,
        )
        EVENTS_RELAYED.inc()

    def _warn(self, message: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning("%s: %r (repeats at most every 30 s)", message, error)

    async def close_all(self) -> None:
        """At shutdown: every connection told to go (clients reconnect, to another pod)."""
        if self.server.eio.sockets:
            await self.server.eio.disconnect()
        await self.server.shutdown()
