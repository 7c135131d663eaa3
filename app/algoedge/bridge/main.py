"""``algoedge bridge``: open the database, Redis and one SDK instance, serve the probes, run the bridge."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from algoedge.bridge.sdk import make_metaapi
from algoedge.bridge.service import REDIS_TIMEOUT, Bridge
from algoedge.config import BridgeSettings
from algoedge.db import Database

log = logging.getLogger("algoedge.bridge")


def probe_app(bridge: Bridge) -> web.Application:
    """/metrics, /readyz (a member whose leases renew) and /livez (the event loop answers)."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def readyz(request: web.Request) -> web.Response:
        if bridge.ready():
            return web.json_response({"status": "ready", "member": bridge.member})
        return web.json_response(
            {"status": "not ready", "member": bridge.member, "members": bridge.members}, status=503
        )

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    return app


async def serve(settings: BridgeSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = await Database.connect(settings)
    redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        health_check_interval=15,
    )
    api = make_metaapi(settings)
    bridge = Bridge(settings, db=db, redis=redis, api=api)
    probes = web.AppRunner(probe_app(bridge), access_log=None)
    await probes.setup()
    try:
        if settings.metrics_port:
            site = web.TCPSite(probes, "0.0.0.0", settings.metrics_port)  # noqa: S104 - pod IP
            await site.start()
        log.info(
            "bridge %s: metrics and probes on :%s, MetaAPI %s, at most %d syncs at once",
            bridge.member,
            settings.metrics_port or "off",
            settings.metaapi_url or settings.metaapi_domain,
            settings.bridge_max_concurrent_syncs,
        )
        await bridge.run(stop)
    finally:
        api.close()
        await asyncio.sleep(0.2)  # close() schedules the sockets' shutdown as tasks
        await probes.cleanup()
        await redis.aclose()
        await db.close()


def run(settings: BridgeSettings) -> int:
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"algoedge bridge: cannot reach a dependency: {exc}", file=sys.stderr)
        return 1
    return 0
