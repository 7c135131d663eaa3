"""`algoedge-metaapi-sim`: serve the local MetaAPI until interrupted; prints its address when ready."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from aiohttp import web

from algoedge.config import ConfigError
from algoedge.metaapi_sim.app import create_app
from algoedge.metaapi_sim.settings import SimSettings, load_sim_settings

#: The project's exit code for a configuration error (as `algoedge`).
EXIT_CONFIG = 2


async def serve(settings: SimSettings) -> None:
    """Run until SIGINT or SIGTERM."""
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    # The bound port, which differs from the setting when ALGOEDGE_SIM_PORT=0.
    port = runner.addresses[0][1] if runner.addresses else settings.port
    print(f"algoedge-metaapi-sim: serving http://{settings.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help"):
        print(
            __doc__.strip() if __doc__ else "",
            "Settings: ALGOEDGE_SIM_* (docs/metaapi-sim.md).",
            sep="\n",
        )
        return 0
    try:
        settings = load_sim_settings(os.environ if environ is None else environ)
    except ConfigError as exc:
        print(f"algoedge-metaapi-sim: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
