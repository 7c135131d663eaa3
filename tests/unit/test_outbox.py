"""The outbox takes best-effort deliveries off the request path: a full queue drops (and counts),
never waits; one delivery that hangs or fails holds up no other for longer than its deadline."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable

from algoedge.auth import EndedSessions
from algoedge.outbox import Outbox
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError


def dropped(kind: str) -> float:
    return REGISTRY.get_sample_value("algoedge_outbox_dropped_total", {"kind": kind}) or 0.0


def failed(kind: str) -> float:
    return REGISTRY.get_sample_value("algoedge_redis_errors_total", {"operation": kind}) or 0.0


@contextlib.asynccontextmanager
async def running(outbox: Outbox) -> AsyncIterator[None]:
    task = asyncio.create_task(outbox.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


class TestOutbox:
    async def test_should_drop_and_count_what_does_not_fit_without_waiting(self) -> None:
        outbox = Outbox(capacity=2)
        never = asyncio.Event()
        before = dropped("emit")
        # Nothing drains: the first two wait, the third is dropped at once.
        assert [outbox.put("emit", never.wait) for _ in range(3)] == [True, True, False]
        assert len(outbox) == 2
        assert dropped("emit") == before + 1

    async def test_should_send_in_order(self) -> None:
        outbox = Outbox()
        sent: list[int] = []

        async def send(n: int) -> None:
            sent.append(n)

        async with running(outbox):
            for n in range(5):
                outbox.put("bridge_wake", functools.partial(send, n))
            await until(lambda: len(sent) == 5)
        assert sent == [0, 1, 2, 3, 4]

    async def test_should_give_up_on_a_hung_delivery_and_count_it(self) -> None:
        outbox = Outbox(timeout_seconds=0.05)
        never = asyncio.Event()
        sent = asyncio.Event()

        async def send() -> None:
            sent.set()

        before = failed("session_end")
        async with running(outbox):
            outbox.put("session_end", never.wait)
            outbox.put("session_end", send)
            await asyncio.wait_for(sent.wait(), 5)
        assert failed("session_end") == before + 1

    async def test_should_go_on_after_a_failed_delivery_and_count_it(self) -> None:
        outbox = Outbox()
        sent = asyncio.Event()

        async def refuse() -> None:
            raise RedisConnectionError("connection refused")

        async def send() -> None:
            sent.set()

        before = failed("bridge_wake")
        async with running(outbox):
            outbox.put("bridge_wake", refuse)
            outbox.put("bridge_wake", send)
            await asyncio.wait_for(sent.wait(), 5)
        assert failed("bridge_wake") == before + 1

    async def test_should_flush_what_waits_within_the_time_given(self) -> None:
        outbox = Outbox(timeout_seconds=10)
        sent: list[str] = []
        never = asyncio.Event()

        async def send() -> None:
            sent.append("sent")

        outbox.put("emit", send)
        outbox.put("emit", never.wait)
        outbox.put("emit", send)
        await outbox.flush(within=0.1)
        assert sent == ["sent"]


class TestEndedSessions:
    def test_should_remember_an_ended_session_for_its_time_only(self) -> None:
        now = [0.0]
        ended = EndedSessions(ttl_seconds=60, clock=lambda: now[0])
        ended.add("a")
        assert "a" in ended
        assert "b" not in ended
        now[0] = 60.0
        assert "a" not in ended

    def test_should_forget_the_oldest_first_beyond_its_size(self) -> None:
        ended = EndedSessions(max_entries=2)
        for jti in ("a", "b", "c"):
            ended.add(jti)
        assert ["a" in ended, "b" in ended, "c" in ended] == [False, True, True]
