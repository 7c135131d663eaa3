"""Retry delays for connects and provisioning: exponential with full jitter, and MetaAPI's 429 advice.

Full jitter (a uniform draw between 0 and the exponential bound) spreads retries of many accounts
that failed together, so a MetaAPI outage does not end in a synchronized storm.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 1.0
    cap: float = 120.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds before retry number ``attempt`` (1 = the first retry)."""
        bound = min(self.cap, self.base * 2 ** min(max(attempt - 1, 0), 30))
        return rng.uniform(0, bound)


def retry_after(recommended: datetime | None, now: datetime, rng: random.Random) -> float:
    """Seconds until MetaAPI's recommended retry time, plus up to 1 s of jitter (never negative)."""
    if recommended is None:
        return rng.uniform(1.0, 5.0)
    return max((recommended - now).total_seconds(), 0.0) + rng.uniform(0, 1.0)
