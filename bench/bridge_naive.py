"""The naive design the bridge benchmark compares with: every account connected on demand, all at once.

Runs in ``.venv-bridge`` (``.venv-bridge/bin/python -m bench.bridge_naive ACCOUNTS.json``). One
SDK instance, as the bridge has; on ``POST /open`` every account does create → deploy → wait
deployed → wait connected → streaming connect → wait synchronized in one ``asyncio.gather``:
no queue, no jitter, no retry of its own, and the SDK's synchronization throttler raised to the
number of accounts so the SDK does not queue for it either (the SDK still caps each socket at a
tenth of its accounts, ``SynchronizationThrottler.max_concurrent_synchronizations``; that part
is not configurable). After a socket drop it relies on the SDK's own resubscribe, like the
bridge. It records nothing: no database, no Redis, no events.

Settings (environment): ``ALGOEDGE_METAAPI_URL``, ``ALGOEDGE_METAAPI_TOKEN``, ``BENCH_NAIVE_PORT``
(its control port on loopback). ACCOUNTS.json is a list of ``{login, password, server}``.

- ``GET /stats``: accounts, how many finished opening, how many SDK connections are synchronized
  now, errors by exception type (429s among them), synchronizations in flight (from
  ``synchronizationStarted`` to the deals, as the bridge's ``SyncTracker`` counts) and their peak
  since the last mark, deals and packets received;
- ``POST /open``: start opening every account (once);
- ``POST /mark``: restart the in-flight peak.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web
from algoedge.bridge.sdk import point_sdk_at
from metaapi_cloud_sdk import MetaApi
from metaapi_cloud_sdk.clients.metaapi.synchronization_listener import SynchronizationListener

from bench.bridge_stats import InFlight

#: The bridge's own step timeouts and polling interval (connection.py), so only the queue differs.
STEP_TIMEOUT = 120
POLL_MS = 500


class Tally(SynchronizationListener):  # type: ignore[misc]
    """One account's synchronization events, counted into the process's totals."""

    def __init__(self, naive: Naive, index: int) -> None:
        self._naive = naive
        self._index = index

    async def on_synchronization_started(
        self, instance_index: str, *args: Any, **kwargs: Any
    ) -> None:
        self._naive.packets += 1
        self._naive.syncs.start((self._index, instance_index))

    async def on_deals_synchronized(self, instance_index: str, synchronization_id: str) -> None:
        self._naive.packets += 1
        self._naive.syncs.finish((self._index, instance_index))

    async def on_disconnected(self, instance_index: str) -> None:
        self._naive.syncs.finish((self._index, instance_index))

    async def on_stream_closed(self, instance_index: str) -> None:
        self._naive.syncs.finish((self._index, instance_index))

    async def on_deal_added(self, instance_index: str, deal: Any) -> None:
        self._naive.packets += 1
        self._naive.deals += 1

    async def on_symbol_prices_updated(
        self, instance_index: str, *args: Any, **kwargs: Any
    ) -> None:
        self._naive.packets += 1

    async def on_account_information_updated(self, instance_index: str, *args: Any) -> None:
        self._naive.packets += 1


class Naive:
    def __init__(self, api: Any, specs: list[dict[str, str]]) -> None:
        self.api = api
        self.specs = specs
        self.connections: list[Any] = []
        self.opened = 0
        self.errors: Counter[str] = Counter()
        self.syncs = InFlight()
        self.deals = 0
        self.packets = 0
        self.started: float | None = None
        self.finished: float | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> bool:
        if self._task is not None:
            return False
        self._task = asyncio.create_task(self._open_all())
        return True

    async def _open_all(self) -> None:
        self.started = time.monotonic()
        results = await asyncio.gather(
            *(self._open_one(i, spec) for i, spec in enumerate(self.specs)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                self.errors[type(result).__name__] += 1
        self.finished = time.monotonic()

    async def _open_one(self, index: int, spec: dict[str, str]) -> None:
        account = await self.api.metatrader_account_api.create_account(
            {
                "name": f"naive-{index}",
                "login": spec["login"],
                "password": spec["password"],
                "server": spec["server"],
                "platform": "mt5",
                "magic": 0,
                "type": "cloud-g2",
                "reliability": "regular",
            }
        )
        await account.deploy()
        await account.wait_deployed(
            timeout_in_seconds=STEP_TIMEOUT, interval_in_milliseconds=POLL_MS
        )
        await account.wait_connected(
            timeout_in_seconds=STEP_TIMEOUT, interval_in_milliseconds=POLL_MS
        )
        connection = account.get_streaming_connection()
        connection.add_synchronization_listener(Tally(self, index))
        self.connections.append(connection)
        await connection.connect()
        await connection.wait_synchronized({"timeoutInSeconds": STEP_TIMEOUT})
        self.opened += 1

    def stats(self) -> dict[str, Any]:
        return {
            "accounts": len(self.specs),
            "opened": self.opened,
            "openSeconds": None
            if self.started is None or self.finished is None
            else self.finished - self.started,
            "done": self.finished is not None,
            "synchronized": sum(1 for c in self.connections if c.synchronized),
            "errors": dict(self.errors),
            "syncsInFlight": self.syncs.now,
            "syncsInFlightPeak": self.syncs.peak,
            "deals": self.deals,
            "packets": self.packets,
        }


NAIVE = web.AppKey("naive", Naive)


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[NAIVE].stats())


async def open_all(request: web.Request) -> web.Response:
    return web.json_response({"started": request.app[NAIVE].open()})


async def mark(request: web.Request) -> web.Response:
    request.app[NAIVE].syncs.mark()
    return web.json_response({"marked": True})


async def serve(specs: list[dict[str, str]], *, url: str, token: str, port: int) -> None:
    api = MetaApi(
        token,
        {
            "application": "AlgoEdgeNaive",
            "requestTimeout": 60,
            # "No queue": the SDK's process-wide bound out of the way.
            "synchronizationThrottler": {"maxConcurrentSynchronizations": max(1, len(specs))},
        },
    )
    point_sdk_at(api, url)
    app = web.Application()
    app[NAIVE] = Naive(api, specs)
    app.router.add_get("/stats", stats)
    app.router.add_post("/open", open_all)
    app.router.add_post("/mark", mark)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"bench.bridge_naive: {len(specs)} accounts, control on :{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        api.close()
        await asyncio.sleep(0.2)  # close() schedules the sockets' shutdown as tasks
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.bridge_naive ACCOUNTS.json", file=sys.stderr)
        return 2
    specs = json.loads(Path(args[0]).read_text())
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(
        serve(
            specs,
            url=os.environ["ALGOEDGE_METAAPI_URL"],
            token=os.environ["ALGOEDGE_METAAPI_TOKEN"],
            port=int(os.environ["BENCH_NAIVE_PORT"]),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
