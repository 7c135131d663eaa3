"""The ceiling of the API benchmark: a bare aiohttp app that answers every request with a tiny JSON.

It does no authentication, no rate limiting, no I/O and has no socket.io, so the load generator's
numbers against it show what aiohttp plus the generator can do on this machine at all.
Run: ``python -m bench.hello --port 8081``.
"""

from __future__ import annotations

import argparse
import resource

from aiohttp import web

LOOPBACK = "127.0.0.1"


async def hello(request: web.Request) -> web.Response:
    # Read the body like a real handler would, so writes cost the same I/O as on the API.
    await request.read()
    return web.json_response({"hello": "world"})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    return app


def raise_file_limit() -> None:
    """Thousands of client sockets need more descriptors than the usual soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hello", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    args = parser.parse_args(argv)
    raise_file_limit()
    web.run_app(create_app(), host=LOOPBACK, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
