"""The API's event-loop lag and GC-pause histograms record what holds the loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from algoedge.api.looplag import (
    YOUNG_COLLECTION_THRESHOLD,
    GcPauses,
    measure_loop_lag_forever,
    tune_gc,
)
from prometheus_client import REGISTRY


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_should_record_a_callback_that_holds_the_loop_as_lag() -> None:
    above_100ms = {"le": "0.1"}
    count_before = _sample("algoedge_api_event_loop_lag_seconds_count")
    fast_before = _sample("algoedge_api_event_loop_lag_seconds_bucket", above_100ms)
    task = asyncio.create_task(measure_loop_lag_forever(interval=0.01))
    await asyncio.sleep(0.05)
    # Holds the loop for 0.3 s: the timer that came due meanwhile fires at least 0.2 s late.
    time.sleep(0.3)  # noqa: ASYNC251 - the stall under test
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    count = _sample("algoedge_api_event_loop_lag_seconds_count") - count_before
    fast = _sample("algoedge_api_event_loop_lag_seconds_bucket", above_100ms) - fast_before
    assert count >= 2
    assert count - fast >= 1, "the 0.3 s stall was not recorded above 0.1 s"


def test_should_time_each_garbage_collection_by_generation() -> None:
    pauses = GcPauses()
    before = _sample("algoedge_api_gc_pause_seconds_count", {"generation": "2"})
    pauses.install()
    pauses.install()  # twice is still once
    try:
        gc.collect(2)
    finally:
        pauses.uninstall()
    gc.collect(2)  # not counted once uninstalled
    after = _sample("algoedge_api_gc_pause_seconds_count", {"generation": "2"})
    assert after - before == 1


def test_should_freeze_start_up_and_make_young_collections_rarer() -> None:
    saved = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, saved[1], saved[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
