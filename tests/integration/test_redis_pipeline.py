"""The API's pipelined Redis connection against a real redis-server: batching, order, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from algoedge.redis_pipeline import PipelinedRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devtools.services import LOOPBACK, RedisServer, free_port


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis.from_url(redis_server.url, timeout_seconds=2.0)
    yield client
    await client.aclose()


async def reads_processed(client: PipelinedRedis) -> int:
    """How many times the server read from a client socket (Redis' INFO stats)."""
    stats = await client.execute("INFO", "stats")
    return int(stats.split("total_reads_processed:")[1].split()[0])


async def test_should_answer_each_caller_with_its_own_reply_under_concurrency(
    client: PipelinedRedis,
) -> None:
    replies = await asyncio.gather(*(client.execute("ECHO", f"reply {i}") for i in range(500)))
    assert replies == [f"reply {i}" for i in range(500)]


async def test_should_write_the_commands_of_one_loop_turn_together(
    client: PipelinedRedis,
) -> None:
    before = await reads_processed(client)
    await asyncio.gather(*(client.execute("PING") for _ in range(200)))
    after = await reads_processed(client)
    # One command sent alone is one read; 200 sent in one turn arrive in a few reads (the
    # second INFO is one more). Without batching this would be 201.
    assert after - before <= 10


async def test_should_decode_replies_like_redis_py_with_decode_responses(
    client: PipelinedRedis,
) -> None:
    key = "pipeline:decode"
    assert await client.execute("SET", key, "héllo", "EX", 60) == "OK"
    assert await client.execute("GET", key) == "héllo"
    assert await client.execute("GET", "pipeline:absent") is None
    assert await client.execute("INCRBY", "pipeline:counter", 5) >= 5
    assert await client.execute("MGET", key, "pipeline:absent") == ["héllo", None]


async def test_should_raise_a_command_error_and_keep_the_connection(
    client: PipelinedRedis,
) -> None:
    await client.execute("SET", "pipeline:text", "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await client.execute("INCR", "pipeline:text")
    assert await client.execute("ECHO", "still here") == "still here"


async def test_should_keep_replies_in_order_when_a_caller_gives_up(
    client: PipelinedRedis,
) -> None:
    await client.execute("PING")
    abandoned = asyncio.create_task(client.execute("ECHO", "abandoned"))
    await asyncio.sleep(0)  # queued
    abandoned.cancel()
    assert await client.execute("ECHO", "mine") == "mine"
    assert abandoned.cancelled()


async def test_should_run_a_script_redis_does_not_know_yet_and_then_by_its_digest(
    client: PipelinedRedis,
) -> None:
    script = client.register_script("return {KEYS[1], ARGV[1]}")
    await client.execute("SCRIPT", "FLUSH")
    assert await client.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script(keys=["k"], args=["a"]) == ["k", "a"]
    assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await script(keys=["k2"], args=[3]) == ["k2", "3"]


async def test_should_refuse_a_wrong_password_with_a_connection_error(
    redis_server: RedisServer,
) -> None:
    wrong = redis_server.url.replace(redis_server.password, "wrong-password")
    client = PipelinedRedis.from_url(wrong, timeout_seconds=2.0)
    try:
        with pytest.raises(RedisConnectionError, match="refused AUTH"):
            await client.execute("PING")
    finally:
        await client.aclose()


async def test_should_select_the_database_of_the_url(redis_server: RedisServer) -> None:
    other_db = redis_server.url.rsplit("/", 1)[0] + "/3"
    client = PipelinedRedis.from_url(other_db, timeout_seconds=2.0)
    try:
        await client.execute("SET", "pipeline:db", "three")
        info = await client.execute("CLIENT", "INFO")
        assert " db=3 " in info
    finally:
        await client.aclose()


async def test_should_fail_fast_when_nothing_listens_and_say_where() -> None:
    port = free_port()
    client = PipelinedRedis.from_url(f"redis://{LOOPBACK}:{port}/0", timeout_seconds=2.0)
    try:
        with pytest.raises(RedisConnectionError, match=f"{LOOPBACK}:{port}"):
            await client.execute("PING")
    finally:
        await client.aclose()


async def test_should_give_up_on_a_redis_that_never_answers_and_connect_again() -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(1024):
            pass  # reads every command, answers none

    server = await asyncio.start_server(silent, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    client = PipelinedRedis.from_url(f"redis://{LOOPBACK}:{port}/0", timeout_seconds=0.3)
    try:
        waiting = [asyncio.create_task(client.execute("PING")) for _ in range(3)]
        for task in waiting:
            with pytest.raises(RedisTimeoutError, match=r"did not answer within 0\.3 s"):
                await task
        with pytest.raises(RedisTimeoutError):
            await client.execute("PING")
        assert len(connections) == 2  # the silent connection was dropped, not reused
    finally:
        await client.aclose()
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()


async def test_should_fail_waiting_commands_when_redis_dies_and_recover_after_restart(
    tmp_path: Path,
) -> None:
    server = RedisServer(root=tmp_path / "redis").start()
    client = PipelinedRedis.from_url(server.url, timeout_seconds=2.0)
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    try:
        assert await script(keys=["pipeline:runs"], args=[]) == 1
        blocked = asyncio.create_task(client.execute("BLPOP", "pipeline:never", 0))
        await asyncio.sleep(0.2)
        server.kill()
        with pytest.raises(RedisConnectionError, match="closed the connection"):
            await blocked
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await client.execute("PING")
        server.start()  # same port and password, empty memory: the script is unknown again
        assert await script(keys=["pipeline:runs"], args=[]) == 1
    finally:
        await client.aclose()
        server.stop()


async def test_should_fail_commands_after_close(redis_server: RedisServer) -> None:
    client = PipelinedRedis.from_url(redis_server.url, timeout_seconds=2.0)
    await client.execute("PING")
    blocked = asyncio.create_task(client.execute("BLPOP", "pipeline:closed", 0))
    await asyncio.sleep(0.1)
    await client.aclose()
    with pytest.raises(RedisConnectionError, match="client was closed"):
        await blocked
    with pytest.raises(RedisConnectionError, match="client was closed"):
        await client.execute("PING")
