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
