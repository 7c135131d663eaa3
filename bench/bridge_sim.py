"""The MetaAPI simulator as the bridge benchmark runs it: unchanged, plus counters of what it was asked.

Runs in ``.venv-bridge`` (``.venv-bridge/bin/python -m bench.bridge_sim``, settings from the same
``ALGOEDGE_SIM_*`` variables as ``algoedge-metaapi-sim``). Beside the simulator's own routes it
serves, on loopback only and without a token (a benchmark tool, like ``/admin`` with
``ALGOEDGE_SIM_ADMIN_REMOTE`` off):

- ``GET /bench/stats``: REST requests, ``subscribe`` and ``synchronize`` requests (total and the
  busiest second since the last mark), synchronize handlers running at once, open sockets, and
  how many accounts have an open subscription that finished a synchronization ("synchronized
  now", the provider's view of a connected account);
- ``POST /bench/mark``: restart the peaks (before a storm, say).

The counters wrap the simulator's request handlers; they change nothing it sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from algoedge.config import ConfigError
from algoedge.metaapi_sim.app import create_app
from algoedge.metaapi_sim.rest import SIMULATOR
from algoedge.metaapi_sim.settings import SimSettings, load_sim_settings

from bench.bridge_stats import InFlight, PerSecond

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SocketHandler = Callable[[str, Any, int, Any], Awaitable[None]]


class Counters:
    """What the provider was asked, counted the same way for every design under test."""

    def __init__(self) -> None:
        self.rest = PerSecond()
        self.subscribes = PerSecond()
        self.synchronizes = PerSecond()
        self.synchronizing = InFlight()

    def mark(self) -> None:
        for counter in (self.rest, self.subscribes, self.synchronizes):
            counter.mark()
        self.synchronizing.mark()

    def to_json(self) -> dict[str, Any]:
        return {
            "rest": {"total": self.rest.total, "peakPerSecond": self.rest.peak},
            "subscribes": {"total": self.subscribes.total, "peakPerSecond": self.subscribes.peak},
            "synchronizes": {
                "total": self.synchronizes.total,
                "peakPerSecond": self.synchronizes.peak,
                "handlersPeak": self.synchronizing.peak,
            },
        }


COUNTERS = web.AppKey("bench_counters", Counters)


def counting_rest(counters: Counters) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The SDK's REST calls (provisioning and its polling); not the socket or our own routes.
        if request.path.startswith("/users/"):
            counters.rest.add(time.monotonic())
        return await handler(request)

    return middleware


def instrument(app: web.Application, counters: Counters) -> None:
    """Wrap the subscribe and synchronize handlers of the app's streaming side with counters."""
    streaming = app[SIMULATOR].streaming
    subscribe: SocketHandler = streaming._subscribe
    synchronize: SocketHandler = streaming._synchronize

    async def counted_subscribe(sid: str, account: Any, instance: int, data: Any) -> None:
        counters.subscribes.add(time.monotonic())
        await subscribe(sid, account, instance, data)

    async def counted_synchronize(sid: str, account: Any, instance: int, data: Any) -> None:
        key = (sid, account.id, instance, data.get("requestId"))
        counters.synchronizes.add(time.monotonic())
        counters.synchronizing.start(key)
        try:
            await synchronize(sid, account, instance, data)
        finally:
            counters.synchronizing.finish(key)

    # Streaming looks its handlers up on the instance at every request.
    setattr(streaming, "_subscribe", counted_subscribe)  # noqa: B010
    setattr(streaming, "_synchronize", counted_synchronize)  # noqa: B010


async def bench_stats(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    open_records = [r for r in sim.subscriptions.records if r.ended_seq is None]
    synchronized = {r.account_id for r in open_records if r.synchronizations >= 1}
    return web.json_response(
        {
            **request.app[COUNTERS].to_json(),
            "sockets": len(sim.streaming.sockets),
            "accounts": len(sim.streaming.accounts),
            "openSubscriptions": len(open_records),
            "synchronizedAccounts": len(synchronized),
        }
    )


async def bench_mark(request: web.Request) -> web.Response:
    request.app[COUNTERS].mark()
    return web.json_response({"marked": True})


@web.middleware
async def loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/bench/") and request.remote not in ("127.0.0.1", "::1"):
        raise web.HTTPForbidden(text="loopback only")
    return await handler(request)


def bench_app(settings: SimSettings) -> web.Application:
    app = create_app(settings)
    counters = Counters()
    app[COUNTERS] = counters
    app.middlewares.append(loopback_only)
    app.middlewares.append(counting_rest(counters))
    instrument(app, counters)
    app.router.add_get("/bench/stats", bench_stats)
    app.router.add_post("/bench/mark", bench_mark)
    return app


async def serve(settings: SimSettings) -> None:
    runner = web.AppRunner(bench_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    port = runner.addresses[0][1] if runner.addresses else settings.port
    print(f"bench.bridge_sim: serving http://{settings.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> int:
    try:
        settings = load_sim_settings(os.environ)
    except ConfigError as exc:
        print(f"bench.bridge_sim: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
