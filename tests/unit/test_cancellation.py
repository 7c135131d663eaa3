"""Stopping tasks that lost their cancellation (Python 3.11's wait_for race)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from algoedge.cancellation import honour_cancellation, stop_tasks


async def lose_one_cancellation(forever: asyncio.Event) -> None:
    """Behaves like a loop whose await swallowed the cancellation, then waits again."""
    # What wait_for does when the awaited future completes at the same moment:
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    await forever.wait()


async def test_should_stop_a_task_that_lost_its_cancellation() -> None:
    task = asyncio.create_task(lose_one_cancellation(asyncio.Event()))
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_tasks([task]), timeout=10)
    assert task.cancelled()


async def test_should_show_that_a_single_cancel_is_not_enough() -> None:
    # The reason stop_tasks exists: one cancel, and the task runs on.
    task = asyncio.create_task(lose_one_cancellation(asyncio.Event()))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done
    await stop_tasks([task])


async def test_should_raise_a_cancellation_an_await_swallowed() -> None:
    reached = asyncio.Event()

    async def swallow_then_check() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        reached.set()
        honour_cancellation()
        await asyncio.sleep(3600)

    task = asyncio.create_task(swallow_then_check())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reached.is_set()


async def test_should_name_tasks_that_will_not_stop(caplog: pytest.LogCaptureFixture) -> None:
    give_in = asyncio.Event()

    async def refuse() -> None:
        while not give_in.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(refuse(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await stop_tasks([task], within=0.6)
    assert "stubborn" in caplog.text
    assert not task.done()
    give_in.set()  # leave nothing running behind the test
    await stop_tasks([task])
    assert task.done()
