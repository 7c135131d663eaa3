"""The API's per-request Redis command through redis-py and through the app's pipelined connection.

The question of issue 14's third pass: what does the one Redis command of every authenticated
request (the rate-limit script, ``EVALSHA`` with the user's and the address's buckets and the
session and user reads) cost the API process's CPU? This runs that script, with the API's own
client options, on a throwaway redis-server, from N concurrent tasks in this one process (as N
requests in flight would), through:

- ``redis-py``: ``Redis.register_script`` on the client :func:`algoedge.cache.connect_redis`
  builds (what the API used before);
- ``redis-py pipeline``: the same client, the calls of one loop turn batched into one
  ``pipeline(transaction=False)``, as a cheaper use of redis-py;
- ``pipelined``: :class:`algoedge.redis_pipeline.PipelinedRedis` (what the API uses now).

It prints this process's CPU time per call (what the API pays; on loopback the sender's
``send()`` also runs Redis' side of TCP) and wall time per call, median of the rounds, with each
client's ratio to redis-py's in the same round.

    .venv/bin/python -m bench.redis_clients [--calls 20000] [--concurrency 1,10,50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from algoedge.cache import REDIS_TIMEOUT_SECONDS, client_options
from algoedge.ratelimit import _LUA
from algoedge.redis_pipeline import PipelinedRedis
from redis.asyncio import Redis

from devtools.services import RedisServer

#: The keys and arguments of one request's check: user and address buckets, then the reads.
KEYS = ["algoedge:rl:user:42", "algoedge:rl:ip:127.0.0.1", "algoedge:session:x", "algoedge:user:42"]
# Limits far above what the benchmark sends (1 µs emission interval), so every call is allowed
# and reads the session and user, as an ordinary request does.
ARGS = ["1.0", "900000000", "1.0", "900000000", "1"]
CLIENTS = ("redis-py", "redis-py pipeline", "pipelined")

Call = Callable[[], Awaitable[Any]]


class _TurnBatcher:
    """Calls made in one loop turn, sent as one redis-py pipeline (no transaction)."""

    def __init__(self, redis: Redis, sha: str) -> None:
        self._redis = redis
        self._sha = sha
        self._queued: list[asyncio.Future[Any]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def call(self) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._send)
        self._queued.append(future)
        return future

    def _send(self) -> None:
        queued, self._queued = self._queued, []
        task = asyncio.ensure_future(self._run(queued))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run(self, queued: list[asyncio.Future[Any]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for _ in queued:
            pipe.evalsha(self._sha, len(KEYS), *KEYS, *ARGS)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for future in queued:
                future.set_exception(exc)
            return
        for future, reply in zip(queued, replies, strict=True):
            future.set_result(reply)


async def _measure(name: str, url: str, *, calls: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per call, wall µs per call) of ``calls`` script calls from ``concurrency`` tasks."""
    closers: list[Callable[[], Awaitable[None]]] = []
    call: Call
    if name == "pipelined":
        pipelined = PipelinedRedis.from_url(url, timeout_seconds=REDIS_TIMEOUT_SECONDS)
        closers.append(pipelined.aclose)
        script = pipelined.register_script(_LUA)

        def call() -> Awaitable[Any]:
            return script(keys=KEYS, args=ARGS)
    else:
        redis: Redis = Redis.from_url(
            url, decode_responses=True, max_connections=200, **client_options()
        )
        closers.append(redis.aclose)
        if name == "redis-py":
            rp_script = redis.register_script(_LUA)

            def call() -> Awaitable[Any]:
                return rp_script(keys=KEYS, args=ARGS)
        else:
            batcher = _TurnBatcher(redis, await redis.script_load(_LUA))
            call = batcher.call

    async def timed() -> Any:
        # The limiter bounds each call the same way.
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            return await call()

    try:
        reply = await timed()  # connects, loads the script
        if not isinstance(reply, list) or reply[0] != 1:
            raise SystemExit(f"{name}: unexpected script reply {reply!r}")
        per_task = calls // concurrency

        async def worker() -> None:
            for _ in range(per_task):
                await timed()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        done = per_task * concurrency
        return (
            (time.process_time() - cpu) / done * 1e6,
            (time.perf_counter() - wall) / done * 1e6,
        )
    finally:
        for close in closers:
            await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per client per round")
    parser.add_argument(
        "--concurrency",
        default="1,10,50",
        help="comma-separated numbers of concurrent callers (default 1,10,50)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds, clients alternated")
    options = parser.parse_args()
    levels = [int(v) for v in options.concurrency.split(",")]
    if options.calls < 1 or options.rounds < 1 or any(v < 1 for v in levels):
        parser.error("--calls, --rounds and every --concurrency must be at least 1")
    with tempfile.TemporaryDirectory(prefix="algoedge-redis-bench-") as root:
        server = RedisServer(root=Path(root) / "redis").start()
        try:
            print(f"redis-server on {server.url.split('@')[1]}; {options.calls} calls per client")
            print()
            print("| concurrency | client | CPU µs/call | wall µs/call | CPU vs redis-py |")
            print("|---:|---|---:|---:|---:|")
            for level in levels:
                cpu: dict[str, list[float]] = {c: [] for c in CLIENTS}
                wall: dict[str, list[float]] = {c: [] for c in CLIENTS}
                ratios: dict[str, list[float]] = {c: [] for c in CLIENTS}
                for _ in range(options.rounds):
                    for client in CLIENTS:
                        c, w = asyncio.run(
                            _measure(client, server.url, calls=options.calls, concurrency=level)
                        )
                        cpu[client].append(c)
                        wall[client].append(w)
                    for client in CLIENTS:
                        ratios[client].append(cpu[client][-1] / cpu["redis-py"][-1])
                for client in CLIENTS:
                    print(
                        f"| {level} | {client} | {statistics.median(cpu[client]):.1f} "
                        f"| {statistics.median(wall[client]):.1f} "
                        f"| {statistics.median(ratios[client]):.2f}x |"
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
