"""The scaler policy: up at once, down only after the demand stayed lower for the whole window."""

from __future__ import annotations

from collections.abc import Sequence

from algoedge_operator.model import ReplicaRange
from algoedge_operator.scaling import (
    Recommendation,
    ScaleDecision,
    ScalerPolicy,
    decide,
    recommended_replicas,
)

BRIDGE = ScalerPolicy(per_replica=100, replicas=ReplicaRange(1, 50), stabilization_seconds=300)


def run(
    demands: Sequence[tuple[float, int]], *, start: int, policy: ScalerPolicy = BRIDGE
) -> list[ScaleDecision]:
    """Feed (time, demand) samples through the policy as the operator does."""
    current = start
    history: tuple[Recommendation, ...] = ()
    decisions = []
    for now, demand in demands:
        decision = decide(demand=demand, current=current, history=history, now=now, policy=policy)
        current, history = decision.replicas, decision.history
        decisions.append(decision)
    return decisions


class TestRecommendedReplicas:
    def test_should_round_up_and_clamp(self) -> None:
        assert recommended_replicas(0, BRIDGE) == 1
        assert recommended_replicas(101, BRIDGE) == 2
        assert recommended_replicas(250, BRIDGE) == 3
        assert recommended_replicas(10_000, BRIDGE) == 50

    def test_should_allow_zero_when_the_minimum_is_zero(self) -> None:
        policy = ScalerPolicy(per_replica=50, replicas=ReplicaRange(0, 8), stabilization_seconds=0)
        assert recommended_replicas(0, policy) == 0


class TestDecide:
    def test_should_scale_up_at_once(self) -> None:
        (decision,) = run([(0, 250)], start=1)
        assert (decision.replicas, decision.direction) == (3, "up")

    def test_should_hold_a_scale_down_until_the_window_passed(self) -> None:
        samples = [(0, 250)] + [(t, 50) for t in range(30, 331, 30)]
        decisions = run(samples, start=1)
        replicas = [d.replicas for d in decisions]
        # Low demand from t=30; the t=0 high recommendation leaves the window after t=300.
        assert replicas[:-1] == [3] * 11
        assert replicas[-1] == 1
        assert decisions[-1].direction == "down"

    def test_should_scale_down_only_to_the_highest_recent_need(self) -> None:
        samples = [(0, 500), (100, 300), (200, 100), (310, 100)]
        assert [d.replicas for d in run(samples, start=1)] == [5, 5, 5, 3]

    def test_should_not_scale_down_right_after_a_restart(self) -> None:
        # No history: the running replicas stand for the unknown past.
        (first,) = run([(1000, 0)], start=4)
        assert first.replicas == 4
        later = run([(1000, 0), (1100, 0), (1301, 0)], start=4)
        assert [d.replicas for d in later] == [4, 4, 1]

    def test_should_scale_down_immediately_without_stabilisation(self) -> None:
        policy = ScalerPolicy(per_replica=50, replicas=ReplicaRange(1, 8), stabilization_seconds=0)
        decisions = run([(0, 400), (1, 0)], start=1, policy=policy)
        assert [d.replicas for d in decisions] == [8, 1]

    def test_should_pull_replicas_into_new_bounds(self) -> None:
        policy = ScalerPolicy(
            per_replica=100, replicas=ReplicaRange(1, 2), stabilization_seconds=300
        )
        decision = decide(demand=900, current=5, history=(), now=0, policy=policy)
        assert (decision.replicas, decision.direction) == (2, "down")

    def test_should_keep_history_bounded_to_the_window(self) -> None:
        decisions = run([(t, 50) for t in range(0, 3000, 30)], start=1)
        assert len(decisions[-1].history) <= 300 / 30 + 2
        assert all(isinstance(r, Recommendation) for r in decisions[-1].history)

    def test_should_explain_each_decision(self) -> None:
        (decision,) = run([(0, 250)], start=1)
        assert "250" in decision.reason
        assert "100 per replica" in decision.reason
