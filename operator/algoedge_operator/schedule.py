"""When one tenant's loop reconciles and reads capacity: a pure state machine, the clock passed in.

A tenant is reconciled at once after a change (its spec or annotations, or one of its children)
and otherwise every resync interval; its capacity is read every scale interval, but only once
the scaler can act and never while the tenant is paused. A reconcile that failed, or left a child
failing, is retried after a backoff that doubles from 2 s up to the resync interval (at most
60 s). :class:`algoedge_operator.controller.TenantLoop` drives it with ``time.monotonic()``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

#: Longest wait before retrying a failed reconcile.
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Step:
    """What to do now."""

    reconcile: bool
    scale: bool


@dataclass(frozen=True)
class Schedule:
    resync_interval: float
    scale_interval: float
    #: A change is waiting for a reconcile.
    pending: bool = True
    #: Monotonic seconds at which the next resync and the next capacity read are due.
    next_resync: float = -math.inf
    next_scale: float = -math.inf
    #: Reconciles in a row that failed (0: the last one succeeded).
    failures: int = 0

    def changed(self) -> Schedule:
        """Something the tenant's children are built from changed: reconcile now."""
        return dataclasses.replace(self, pending=True)

    def wake_at(self) -> float:
        """When the next step is due (at once while a change is pending)."""
        return -math.inf if self.pending else min(self.next_resync, self.next_scale)

    def step(self, now: float, *, paused: bool, can_scale: bool) -> tuple[Schedule, Step]:
        """What is due at ``now``; ``can_scale``: the scaler knows the replicas and the API
        answers. A scale tick that comes while scaling cannot happen is skipped, not queued."""
        scale_due = now >= self.next_scale
        step = Step(
            reconcile=self.pending or now >= self.next_resync,
            scale=scale_due and can_scale and not paused,
        )
        after = dataclasses.replace(
            self,
            pending=False,
            next_scale=now + self.scale_interval if scale_due else self.next_scale,
        )
        return after, step

    def backoff(self, failures: int) -> float:
        return min(MAX_BACKOFF_SECONDS, self.resync_interval, 2.0**failures)

    def reconciled(self, now: float, *, ok: bool) -> Schedule:
        """After a reconcile: the next resync, or a retry after a backoff when it failed."""
        if ok:
            return dataclasses.replace(self, failures=0, next_resync=now + self.resync_interval)
        failures = self.failures + 1
        return dataclasses.replace(
            self, failures=failures, next_resync=now + self.backoff(failures)
        )

    def unusable(self, now: float) -> Schedule:
        """The spec cannot be parsed: nothing to retry until it changes (or the next resync)."""
        return dataclasses.replace(self, pending=False, next_resync=now + self.resync_interval)
