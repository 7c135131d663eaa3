"""One pipelined Redis connection for the commands every API request makes (its rate-limit script).

redis-py spends 85-95 µs of CPU on one ``EVALSHA`` from a busy event loop (a pooled
connection taken and given back under a lock, a retry wrapper, a timeout, its own parser
calls, one ``send()`` per command: ``docs/benchmarks.md``, "Third pass"), which was a quarter
of an authenticated request. This client keeps one connection and writes every command issued
in one turn of the event loop with a single ``send()``; Redis answers in order, so replies are
matched to callers first in, first out, parsed by hiredis. It costs 10-12 µs per command there.

What it keeps of redis-py's behaviour, so a caller's failure handling does not change:
failures are ``redis.exceptions`` errors (``ConnectionError``, ``TimeoutError``,
``ResponseError`` and its ``NoScriptError``), replies are decoded to ``str`` like
``decode_responses=True``, connecting and every reply are bounded by ``timeout_seconds``,
the URL forms are the ones :func:`algoedge.urls.check_redis_url` accepts (password, user, DB,
``rediss://``). What it does not do: retry. A command whose connection broke fails, because a
rate-limit script may have run before the connection broke and must not be charged twice;
the next command connects again.

Only a few commands go through it. Everything else (pub/sub, the cache's writes, the jobs)
uses redis-py through :func:`algoedge.cache.connect_redis`.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from algoedge.urls import REDIS_SCHEMES, check_redis_url, split_url

Arg = str | bytes | int | float

_DEFAULT_PORT: Final = 6379


@dataclass(frozen=True)
class RedisAddress:
    """Where and as whom to connect, from a Redis URL."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = split_url(check_redis_url(url), schemes=REDIS_SCHEMES)
        db = parts.path.strip("/")
        return cls(
            host=parts.hostname or "",
            port=parts.port or _DEFAULT_PORT,
            db=int(db) if db else 0,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
        )

    def handshake(self) -> list[tuple[str, ...]]:
        """The commands a new connection sends before any other: AUTH, then SELECT."""
        commands: list[tuple[str, ...]] = []
        if self.password is not None:
            user = (self.username,) if self.username else ()
            commands.append(("AUTH", *user, self.password))
        if self.db:
            commands.append(("SELECT", str(self.db)))
        return commands


class _Connection(asyncio.Protocol):
    """One socket to Redis: commands queued in one loop turn are written together."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._timeout_seconds = timeout_seconds
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._unsent: list[bytes] = []
        self._flush_scheduled = False
        # Commands sent and replies received on this connection, to tell a reply that is late.
        self._sent = 0
        self._answered = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed_because: Exception | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Notices a Redis host that vanished without a reset while the connection idles.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.close(RedisConnectionError(f"Redis sent something that is not RESP: {exc}"))
                return
            if reply is False:
                return
            if not self._waiting:
                self.close(RedisConnectionError(f"Redis sent a reply nobody asked for: {reply!r}"))
                return
            self._answered += 1
            waiter = self._waiting.popleft()
            if waiter.done():  # its caller gave up (cancelled); the reply is dropped in order
                continue
            if isinstance(reply, ResponseError):
                waiter.set_exception(_response_error(reply))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.closed_because or RedisConnectionError(
            f"Redis closed the connection ({exc or 'end of stream'})"
        )
        self._fail_all(reason)

    # -- used by PipelinedRedis

    @property
    def is_open(self) -> bool:
        return (
            self._transport is not None
            and not self._transport.is_closing()
            and self.closed_because is None
        )

    def send(self, args: tuple[Arg, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        if not self.is_open:
            waiter.set_exception(self.closed_because or RedisConnectionError("not connected"))
            return waiter
        # hiredis' stub types the tuple as one element; it takes any number.
        self._unsent.append(hiredis.pack_command(args))  # type: ignore[arg-type]
        self._waiting.append(waiter)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return waiter

    def close(self, reason: Exception) -> None:
        if self.closed_because is None:
            self.closed_because = reason
        if self._transport is not None:
            self._transport.abort()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._fail_all(reason)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._unsent or self._transport is None or not self.is_open:
            return
        data, self._unsent = b"".join(self._unsent), []
        self._sent = len(self._waiting) + self._answered
        self._transport.write(data)
        if self._watchdog is None:
            self._watch()

    def _watch(self) -> None:
        # One timer at a time, not one per command or write: every command sent before it was
        # set must be answered when it fires (so each within one to two timeouts), or Redis is
        # not answering and the connection is given up.
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(loop.time() + self._timeout_seconds, self._check, self._sent)

    def _check(self, sent: int) -> None:
        self._watchdog = None
        if self.closed_because is not None:
            return
        if self._answered < sent:
            self.close(
                RedisTimeoutError(f"Redis did not answer within {self._timeout_seconds:g} s")
            )
        elif self._waiting:
            self._watch()

    def _fail_all(self, reason: Exception) -> None:
        self._unsent.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(reason)


def _response_error(reply: ResponseError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return reply


class PipelinedScript:
    """A Lua script run by ``EVALSHA``, sent once in full (``EVAL``) if Redis does not know it."""

    def __init__(self, client: PipelinedRedis, text: str) -> None:
        self._client = client
        self._text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, *, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self._client.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A Redis that restarted (or was flushed) forgot it; EVAL also caches it again.
            return await self._client.execute("EVAL", self._text, len(keys), *keys, *args)


class PipelinedRedis:
    """A lazily connecting, pipelined client: :meth:`execute` any command, or run a script.

    One connection serves the whole process; a broken one is replaced by the next command.
    """

    def __init__(self, address: RedisAddress, *, timeout_seconds: float) -> None:
        self._address = address
        self._timeout_seconds = timeout_seconds
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, *, timeout_seconds: float) -> PipelinedRedis:
        """A client for ``url``; raises ValueError for a URL the settings would refuse."""
        return cls(RedisAddress.from_url(url), timeout_seconds=timeout_seconds)

    def register_script(self, text: str) -> PipelinedScript:
        """``text`` as a script to call with ``keys`` and ``args`` (the redis-py way)."""
        return PipelinedScript(self, text)

    async def execute(self, *args: Arg) -> Any:
        """Send one command and wait for its reply (decoded: str, int, None, lists)."""
        connection = self._connection
        if connection is None or not connection.is_open:
            connection = await self._connect()
        return await connection.send(args)

    async def aclose(self) -> None:
        """Close the connection; commands still waiting fail with ConnectionError."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.close(RedisConnectionError("the client was closed"))
            self._connection = None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise RedisConnectionError("the client was closed")
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._open(), name="redis-pipeline-connect")
            self._connecting.add_done_callback(self._connected)
        # shield: one caller giving up (its own timeout) must not cancel the others' connect.
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def _open(self) -> _Connection:
        address = self._address
        where = f"{address.host}:{address.port}"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(timeout_seconds=self._timeout_seconds),
                    address.host,
                    address.port,
                    ssl=ssl.create_default_context() if address.tls else None,
                )
        except TimeoutError as exc:
            raise RedisTimeoutError(
                f"connecting to Redis at {where} took over {self._timeout_seconds:g} s"
            ) from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc}") from exc
        try:
            async with asyncio.timeout(self._timeout_seconds):
                for command in address.handshake():
                    try:
                        await connection.send(command)
                    except ResponseError as exc:
                        raise RedisConnectionError(
                            f"Redis at {where} refused {command[0]}: {exc}"
                        ) from exc
        except BaseException as exc:
            reason = (
                exc
                if isinstance(exc, RedisConnectionError)
                else RedisTimeoutError(
                    f"Redis at {where} did not answer {len(address.handshake())} set-up command(s)"
                )
            )
            connection.close(reason)
            if isinstance(exc, TimeoutError):
                raise reason from exc
            raise
        return connection
