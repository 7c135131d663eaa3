"""The simulator's aiohttp application: REST routes, socket.io at /ws/, and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from algoedge.metaapi_sim.accounts import ProvisionedAccount
from algoedge.metaapi_sim.broker import Market
from algoedge.metaapi_sim.faults import Faults
from algoedge.metaapi_sim.observe import SubscriptionLog
from algoedge.metaapi_sim.provisioning import Provisioning
from algoedge.metaapi_sim.rest import (
    ADMIN_ROUTES,
    PUBLIC_ROUTES,
    SIMULATOR,
    Simulator,
    metaapi_errors,
)
from algoedge.metaapi_sim.settings import SimSettings
from algoedge.metaapi_sim.streaming import Streaming, utc_now

#: The SDK connects to "<base>/ws/?auth-token=…&clientId=…&protocol=3&EIO=3".
SOCKETIO_PATH = "ws"


class GatheringManager(socketio.AsyncManager):  # type: ignore[misc]  # socketio ships no types
    """python-socketio 4's manager with ``asyncio.gather``: its ``asyncio.wait`` on bare coroutines fails on 3.11."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> None:
        if namespace not in self.rooms or room not in self.rooms[namespace]:
            return
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        sends = []
        for sid in self.get_participants(namespace, room):
            if sid in skipped:
                continue
            ack = self._generate_ack_id(sid, namespace, callback) if callback is not None else None
            sends.append(self.server._emit_internal(sid, event, data, namespace, ack))
        await asyncio.gather(*sends)


def create_app(settings: SimSettings) -> web.Application:
    """The simulator as an aiohttp application (``web.AppRunner`` or ``aiohttp.test_utils`` serve it)."""
    app = web.Application(middlewares=[metaapi_errors])
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=GatheringManager())
    sio.attach(app, socketio_path=SOCKETIO_PATH)
    accounts: dict[str, ProvisionedAccount] = {}
    faults = Faults(rng=random.Random(settings.seed + 1))  # noqa: S311 - seeded on purpose
    subscriptions = SubscriptionLog()
    streaming = Streaming(
        sio=sio,
        settings=settings,
        accounts=accounts,
        market=Market(settings.seed),
        faults=faults,
        subscriptions=subscriptions,
        clock=utc_now,
    )
    provisioning = Provisioning(
        settings=settings, accounts=accounts, streaming=streaming, faults=faults, clock=utc_now
    )
    app[SIMULATOR] = Simulator(settings, provisioning, streaming, faults, subscriptions)
    app.add_routes(PUBLIC_ROUTES)
    app.add_routes(ADMIN_ROUTES)
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    # Open websockets would hold aiohttp's shutdown for its whole timeout.
    await app[SIMULATOR].streaming.drop_all()


async def _background(app: web.Application) -> AsyncIterator[None]:
    sim = app[SIMULATOR]
    loops = [
        asyncio.create_task(sim.streaming.status_loop()),
        asyncio.create_task(sim.streaming.tick_loop()),
    ]
    yield
    for task in loops:
        task.cancel()
    for task in loops:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await sim.provisioning.close()
