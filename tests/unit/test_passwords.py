"""Password hashing's own bound: how many run, how many wait, and when a place is given back."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from algoedge.auth import HashingBusy, Passwords


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(concurrency=1, queue=1)


async def refused_at_once(passwords: Passwords) -> bool:
    """Whether one more hash is refused without waiting (it is not left blocking the test)."""
    attempt = asyncio.create_task(passwords.run(lambda: 0))
    await asyncio.sleep(0)
    if not attempt.done():
        attempt.cancel()
        return False
    return isinstance(attempt.exception(), HashingBusy)


def blocked(started: threading.Event, release: threading.Event) -> int:
    started.set()
    release.wait()
    return 1


async def test_should_refuse_beyond_the_threads_and_the_queue(passwords: Passwords) -> None:
    started, release = threading.Event(), threading.Event()
    running = asyncio.create_task(passwords.run(lambda: blocked(started, release)))
    waiting = asyncio.create_task(passwords.run(lambda: 2))
    await asyncio.to_thread(started.wait)
    refused = await refused_at_once(passwords)
    release.set()
    assert refused
    assert (await running, await waiting) == (1, 2)
    assert await passwords.run(lambda: 4) == 4
    passwords.close()


async def test_should_keep_a_place_until_its_hash_finishes_though_the_request_went_away(
    passwords: Passwords,
) -> None:
    """A client that hangs up must not free a place while its hash still holds 64 MiB."""
    started, release = threading.Event(), threading.Event()
    abandoned = asyncio.create_task(passwords.run(lambda: blocked(started, release)))
    await asyncio.to_thread(started.wait)
    abandoned.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await abandoned
    queued = asyncio.create_task(passwords.run(lambda: 2))  # the one place in the queue
    await asyncio.sleep(0)
    refused = await refused_at_once(passwords)
    release.set()
    assert refused
    assert await queued == 2
    passwords.close()


async def test_should_verify_only_the_right_password(passwords: Passwords) -> None:
    stored = await passwords.hash("correct horse battery")
    assert await passwords.verify(stored, "correct horse battery")
    assert not await passwords.verify(stored, "wrong")
    assert not await passwords.verify(None, "correct horse battery")  # an unknown account
    passwords.close()
