"""The scaler policy shared by the bridge and the workers: a pure function of demand, replicas, history and clock.

Replicas follow ``clamp(ceil(demand / per_replica), min, max)``. Scaling up happens at once;
scaling down only to the highest recommendation of the last ``stabilization_seconds`` (the
HPA's rule), so the demand must have stayed lower for the whole window first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from algoedge_operator.model import ReplicaRange


@dataclass(frozen=True)
class ScalerPolicy:
    """How one component turns demand into replicas."""

    #: Units of demand one replica serves (linked accounts, queued tasks).
    per_replica: int
    replicas: ReplicaRange
    stabilization_seconds: float


@dataclass(frozen=True)
class Recommendation:
    """What the policy wanted at a moment (monotonic seconds)."""

    at: float
    replicas: int


@dataclass(frozen=True)
class ScaleDecision:
    replicas: int
    #: What the demand alone asks for (before stabilisation).
    recommended: int
    direction: Literal["up", "down", "hold"]
    #: Recommendations still inside the window; pass them to the next call.
    history: tuple[Recommendation, ...]
    #: Why, for Events and logs.
    reason: str


def recommended_replicas(demand: int, policy: ScalerPolicy) -> int:
    return policy.replicas.clamp(math.ceil(max(demand, 0) / policy.per_replica))


def decide(
    *,
    demand: int,
    current: int,
    history: Sequence[Recommendation],
    now: float,
    policy: ScalerPolicy,
) -> ScaleDecision:
    """The replicas to run now, given ``current`` and the recent ``history``."""
    recommended = recommended_replicas(demand, policy)
    window_start = now - policy.stabilization_seconds
    latest = Recommendation(now, recommended)
    in_window = [r for r in history if r.at >= window_start]
    ceiling = max([r.replicas for r in in_window] + [recommended])
    # Until the history reaches back to the window's start (a new tenant, an operator restart)
    # the current count stands in for the unknown past, so nothing scales down early.
    if not any(r.at <= window_start for r in history):
        ceiling = max(ceiling, current)
    bounded_current = policy.replicas.clamp(current)
    direction: Literal["up", "down", "hold"]
    if recommended > bounded_current:
        replicas, direction = recommended, "up"
        reason = f"demand {demand} needs {recommended} replicas ({policy.per_replica} per replica)"
    elif ceiling < bounded_current:
        replicas, direction = ceiling, "down"
        reason = (
            f"demand {demand} needs {recommended} replicas; the highest need of the last "
            f"{policy.stabilization_seconds:g} s is {ceiling}"
        )
    elif bounded_current != current:
        replicas = bounded_current
        direction = "up" if bounded_current > current else "down"
        reason = (
            f"{current} replicas is outside {policy.replicas.minimum}..{policy.replicas.maximum}"
        )
    else:
        replicas, direction = current, "hold"
        reason = f"demand {demand} needs {recommended} replicas; keeping {current}"
    return ScaleDecision(
        replicas=replicas,
        recommended=recommended,
        direction=direction,
        history=_compact(history, latest, window_start),
        reason=reason,
    )


def _compact(
    history: Sequence[Recommendation], latest: Recommendation, window_start: float
) -> tuple[Recommendation, ...]:
    """The window's recommendations, plus the newest older one, which proves the window is covered."""
    older = [r for r in history if r.at < window_start]
    marker = (max(older, key=lambda r: r.at),) if older else ()
    return (*marker, *(r for r in history if r.at >= window_start), latest)
