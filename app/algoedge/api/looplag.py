"""The API's own view of its event loop: how late a periodic timer fires (lag), and how long
each garbage collection holds the process, both as histograms on /metrics.

A request or socket event waits for whatever holds the loop, so a p99 tail that capacity does
not explain shows up here first; the GC histogram tells one usual suspect apart from the rest.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from algoedge.metrics import API_EVENT_LOOP_LAG, API_GC_PAUSES

#: Seconds between lag samples: often enough to see a stall of a few tens of milliseconds,
#: rarely enough to cost nothing measurable (ten timer callbacks a second).
LAG_INTERVAL_SECONDS = 0.1


async def measure_loop_lag_forever(interval: float = LAG_INTERVAL_SECONDS) -> None:
    """Until cancelled, observe how much later than asked each ``interval`` sleep returns."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        API_EVENT_LOOP_LAG.observe(max(0.0, loop.time() - asked))


#: Allocations (net) between young collections; CPython's default is 700. A young collection
#: promotes whatever is alive at that moment (the objects of every request in flight), and the
#: promoted objects are what makes a full collection come due: with thousands of sockets'
#: objects in the old generation, a full collection holds the loop for hundreds of milliseconds
#: (docs/benchmarks.md). Rarer young collections promote far less.
YOUNG_COLLECTION_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect and freeze what start-up built (never garbage, never scanned again), and make
    young collections rarer (see :data:`YOUNG_COLLECTION_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


class GcPauses:
    """Times every collection through ``gc.callbacks`` while installed."""

    def __init__(self) -> None:
        self._started = 0.0
        self._pauses = [API_GC_PAUSES.labels(generation=str(g)) for g in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses[min(int(info["generation"]), 2)].observe(
                time.perf_counter() - self._started
            )

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
