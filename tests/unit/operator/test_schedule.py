"""The per-tenant schedule: when a tenant is reconciled and scaled, with the clock passed in."""

from __future__ import annotations

import math

from algoedge_operator.schedule import MAX_BACKOFF_SECONDS, Schedule, Step

RESYNC, SCALE = 60.0, 30.0


def started() -> Schedule:
    return Schedule(resync_interval=RESYNC, scale_interval=SCALE)


def settled(at: float = 0.0) -> Schedule:
    """Reconciled once at ``at``, the first scale tick taken."""
    schedule, _ = started().step(at, paused=False, can_scale=False)
    return schedule.reconciled(at, ok=True)


class TestSchedule:
    def test_should_reconcile_a_new_tenant_at_once(self) -> None:
        schedule = started()
        assert schedule.wake_at() == -math.inf
        _, step = schedule.step(100.0, paused=False, can_scale=False)
        assert step == Step(reconcile=True, scale=False)

    def test_should_wait_for_the_resync_when_nothing_changes(self) -> None:
        schedule = settled()
        assert schedule.wake_at() == SCALE
        _, step = schedule.step(SCALE - 1, paused=False, can_scale=True)
        assert step == Step(reconcile=False, scale=False)
        _, step = schedule.step(RESYNC, paused=False, can_scale=False)
        assert step.reconcile

    def test_should_reconcile_at_once_after_a_change(self) -> None:
        schedule = settled().changed()
        assert schedule.wake_at() == -math.inf
        after, step = schedule.step(1.0, paused=False, can_scale=False)
        assert step.reconcile
        assert not after.pending

    def test_should_read_capacity_every_scale_interval_once_the_scaler_can_act(self) -> None:
        schedule = settled()
        schedule, step = schedule.step(SCALE, paused=False, can_scale=True)
        assert step == Step(reconcile=False, scale=True)
        assert schedule.wake_at() == min(2 * SCALE, RESYNC)
        _, step = schedule.step(SCALE + 1, paused=False, can_scale=True)
        assert not step.scale

    def test_should_skip_scale_ticks_while_the_scaler_cannot_act(self) -> None:
        schedule, step = settled().step(SCALE, paused=False, can_scale=False)
        assert not step.scale
        _, step = schedule.step(SCALE + 1, paused=False, can_scale=True)
        assert not step.scale, "a skipped tick is not made up for"
        _, step = schedule.step(2 * SCALE, paused=False, can_scale=True)
        assert step.scale

    def test_should_never_scale_a_paused_tenant_but_still_reconcile_it(self) -> None:
        _, step = settled().changed().step(SCALE, paused=True, can_scale=True)
        assert step == Step(reconcile=True, scale=False)

    def test_should_back_off_after_failures_and_reset_after_success(self) -> None:
        schedule = settled()
        retries = []
        for _ in range(5):
            schedule = schedule.reconciled(0.0, ok=False)
            retries.append(schedule.next_resync)
        assert retries == [2.0, 4.0, 8.0, 16.0, 32.0]
        for _ in range(3):
            schedule = schedule.reconciled(0.0, ok=False)
        assert schedule.next_resync == min(MAX_BACKOFF_SECONDS, RESYNC)
        schedule = schedule.reconciled(10.0, ok=True)
        assert (schedule.failures, schedule.next_resync) == (0, 10.0 + RESYNC)

    def test_should_never_back_off_longer_than_the_resync(self) -> None:
        schedule = Schedule(resync_interval=2.0, scale_interval=1.0)
        for _ in range(4):
            schedule = schedule.reconciled(0.0, ok=False)
        assert schedule.next_resync == 2.0

    def test_should_wait_for_a_change_or_the_resync_after_an_unusable_spec(self) -> None:
        schedule = started().unusable(5.0)
        assert not schedule.pending
        _, step = schedule.step(6.0, paused=False, can_scale=False)
        assert not step.reconcile
        _, step = schedule.changed().step(6.0, paused=False, can_scale=False)
        assert step.reconcile
