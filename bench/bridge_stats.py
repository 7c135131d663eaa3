"""Pure helpers the bridge benchmark's three processes share (standard library only: both venvs import it).

``bench.bridge_load`` (main venv) drives the run; ``bench.bridge_sim`` and ``bench.bridge_naive``
(``.venv-bridge``) count requests and synchronizations with the same two counters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Trade events the bridge publishes, and the field of each that holds the deal's time.
TRADE_EVENT_TIMES = {"trade.opened": "opened_at", "trade.closed": "closed_at"}


@dataclass
class PerSecond:
    """Counts events in whole-second buckets: the busiest second since the last ``mark``."""

    total: int = 0
    _buckets: dict[int, int] = field(default_factory=dict)

    def add(self, now: float) -> None:
        self.total += 1
        second = int(now)
        self._buckets[second] = self._buckets.get(second, 0) + 1

    def mark(self) -> None:
        """Forget the buckets (the peak restarts); the total keeps counting."""
        self._buckets.clear()

    @property
    def peak(self) -> int:
        return max(self._buckets.values(), default=0)


@dataclass
class InFlight:
    """Things started and not yet finished (keyed, so a repeated finish is harmless)."""

    _open: set[Any] = field(default_factory=set)
    peak: int = 0

    def start(self, key: Any) -> None:
        self._open.add(key)
        self.peak = max(self.peak, len(self._open))

    def finish(self, key: Any) -> None:
        self._open.discard(key)

    def finish_where(self, matches: Any) -> None:
        """Finish every open key for which ``matches(key)`` holds."""
        self._open -= {k for k in self._open if matches(k)}

    def mark(self) -> None:
        """The peak restarts from what is open now."""
        self.peak = len(self._open)

    @property
    def now(self) -> int:
        return len(self._open)


def epoch_of(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (``Z`` or an offset; naive means UTC)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def trade_event_latency(event: str, data: Any, received: float) -> float | None:
    """Seconds from the deal's time in a ``trade.opened`` / ``trade.closed`` payload to ``received``.

    None for other events or a payload without the time. Deal times carry milliseconds
    (truncated by the simulator), so a latency reads up to 1 ms long.
    """
    name = TRADE_EVENT_TIMES.get(event)
    if name is None or not isinstance(data, Mapping):
        return None
    at = epoch_of(data.get(name))
    return None if at is None else received - at


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def per_account_kib(before_kib: int | None, after_kib: int | None, accounts: int) -> float:
    """Resident memory the accounts added, per account (NaN when a reading is missing)."""
    if before_kib is None or after_kib is None or accounts <= 0:
        return math.nan
    return (after_kib - before_kib) / accounts


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; columns after the first are right-aligned (they hold numbers)."""
    align = ["---", *["---:"] * (len(header) - 1)]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
