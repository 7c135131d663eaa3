"""socket.io clients for tests: one that records what it receives, and raw engine.io connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import socketio


class Listener:
    """A socket.io client that records every event it receives, and why it was refused."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.refusals: list[Any] = []
        self.client.on("*", self._record)
        self.client.on("connect_error", self._refused)

    async def _record(self, event: str, data: Any) -> None:
        self.events.append((event, data))

    async def _refused(self, data: Any) -> None:
        self.refusals.append(data)

    async def connect(self, base: str, token: str | None) -> None:
        await self.client.connect(
            base,
            auth={"token": token} if token else None,
            transports=["websocket"],
            wait_timeout=10,
        )

    async def refusal(self, base: str, token: str) -> str:
        """Connect, expecting a refusal; the server's reason."""
        try:
            await self.connect(base, token)
        except socketio.exceptions.ConnectionError:
            pass
        else:
            await self.client.disconnect()
            raise AssertionError("the socket was let in")
        assert self.refusals, "refused without a reason (no CONNECT_ERROR from the server)"
        reason = self.refusals[-1]
        return str(reason.get("message") if isinstance(reason, dict) else reason)

    async def wait_for(self, event: str, within: float = 10) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            for name, data in self.events:
                if name == event:
                    return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event!r} within {within}s; got {self.events}")

    async def wait_closed(self, within: float = 10) -> None:
        """Until the server has closed this socket; fail after ``within`` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while self.client.connected:
            assert asyncio.get_running_loop().time() < deadline, "the socket is still connected"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def engineio_connection(
    http: aiohttp.ClientSession, base: str
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A bare engine.io websocket, past its OPEN packet, that has sent nothing of socket.io."""
    async with http.ws_connect(f"{base}/socket.io/?EIO=4&transport=websocket") as ws:
        opening = await ws.receive_str(timeout=10)
        assert opening.startswith("0{"), opening
        yield ws


async def next_socketio_packet(ws: aiohttp.ClientWebSocketResponse, within: float = 10) -> str:
    """The next engine.io message packet's socket.io payload, answering pings on the way."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, "no socket.io packet in time"
        message = await ws.receive(timeout=left)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        if message.data == "2":
            await ws.send_str("3")
        elif message.data.startswith("4"):
            return str(message.data[1:])


async def send_connect(ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
    """socket.io CONNECT to the default namespace, with ``token`` as the auth payload."""
    await ws.send_str("40" + json.dumps({"token": token}))


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse, within: float) -> bool:
    """Whether the server closes ``ws`` within ``within`` seconds while it answers every ping
    (so only the server's own rule, not a missed pong, can close it)."""
    deadline = asyncio.get_running_loop().time() + within
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            message = await ws.receive(timeout=left)
        except TimeoutError:
            return False
        if message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return True
        if message.type == aiohttp.WSMsgType.TEXT and message.data == "2":
            await ws.send_str("3")
        elif message.type == aiohttp.WSMsgType.TEXT and message.data == "1":  # engine.io CLOSE
            return True
    return False
