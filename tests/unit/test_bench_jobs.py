"""The pure helpers of the jobs benchmark: seed shape, /proc parsing, worker metrics, medians and ratios."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from bench.api_load import LatencyStats, PhaseResult
from bench.inline_reports_app import _run_request
from bench.jobs_load import (
    CpuSnapshot,
    closing_times,
    cores_between,
    median_of,
    parse_proc_stat,
    phase_key,
    phase_ratios,
    runqueue_wait_ns,
    task_stats,
    vm_hwm_kib,
)

DAY = date(2026, 3, 2)


def rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - workload shape, not security


class TestClosingTimes:
    def test_should_spread_every_trade_inside_the_utc_day_in_order(self) -> None:
        times = closing_times(DAY, 2000, rng(1))
        start = datetime(2026, 3, 2, tzinfo=UTC)
        assert len(times) == 2000
        assert times == sorted(times)
        assert all(start <= t < start + timedelta(days=1) for t in times)
        # Spread over the day, not bunched at one end.
        assert times[0] - start < timedelta(hours=1)
        assert start + timedelta(days=1) - times[-1] < timedelta(hours=1)

    def test_should_be_reproducible_from_the_seed(self) -> None:
        assert closing_times(DAY, 50, rng(7)) == closing_times(DAY, 50, rng(7))


class TestProc:
    def test_should_read_the_peak_rss_from_the_status_file(self) -> None:
        status = "Name:\talgoedge\nVmPeak:\t  600000 kB\nVmHWM:\t   80124 kB\nVmRSS:\t   79000 kB\n"
        assert vm_hwm_kib(status) == 80124
        assert vm_hwm_kib("Name:\tkthreadd\n") is None

    def test_should_parse_a_stat_line_whose_name_holds_spaces_and_parentheses(self) -> None:
        fields = ["S", "41", *["0"] * 9, "100", "20", "3", "4", *["0"] * 30]
        stat = parse_proc_stat(f"4242 (postgres: algoedge (idle)) {' '.join(fields)}")
        assert (stat.pid, stat.ppid, stat.ticks) == (4242, 41, 127)

    def test_should_read_the_run_queue_wait_from_schedstat(self) -> None:
        assert runqueue_wait_ns("326579785 482483611 1070\n") == 482483611

    def test_should_turn_cpu_seconds_into_cores_over_the_elapsed_time(self) -> None:
        before = CpuSnapshot(at=10.0, seconds={"workers": 1.0}, busy=100.0, total=400.0)
        after = CpuSnapshot(at=14.0, seconds={"workers": 5.0}, busy=300.0, total=800.0)
        cores = cores_between(before, after)
        assert cores["workers"] == pytest.approx(1.0)
        assert 0 < cores["machine"] <= 64


class TestWorkerMetrics:
    def test_should_sum_executions_time_and_outcomes_over_the_workers(self) -> None:
        one = (
            'algoedge_jobs_task_duration_seconds_count{task="algoedge.reports.batch"} 4.0\n'
            'algoedge_jobs_task_duration_seconds_sum{task="algoedge.reports.batch"} 20.0\n'
            'algoedge_jobs_tasks_total{task="algoedge.reports.batch",outcome="succeeded"} 4.0\n'
            'algoedge_jobs_emails_total{outcome="sent"} 9.0\n'
        )
        two = (
            'algoedge_jobs_task_duration_seconds_count{task="algoedge.reports.batch"} 6.0\n'
            'algoedge_jobs_task_duration_seconds_sum{task="algoedge.reports.batch"} 40.0\n'
            'algoedge_jobs_tasks_total{task="algoedge.reports.batch",outcome="retried"} 1.0\n'
        )
        stats = task_stats([one, two])
        assert list(stats) == ["algoedge.reports.batch"]
        batch = stats["algoedge.reports.batch"]
        assert (batch.runs, batch.seconds, batch.mean_ms) == (10, 60.0, 6000.0)
        assert batch.outcomes == {"succeeded": 4, "retried": 1}


def phase(p50: float, p95: float, p99: float) -> PhaseResult:
    latency = LatencyStats(count=100, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=p99)
    return PhaseResult(
        target="x",
        users=1,
        api_processes=1,
        duration_s=1.0,
        think_s=1.0,
        requests=100,
        rps=100.0,
        latency=latency,
        routes={},
        errors={},
        error_count=0,
        logins_ok=1,
        login_seconds=0.0,
        sockets_ok=1,
        socket_connect_seconds=0.0,
        socket_disconnects=0,
        events_sent=0,
        event_latency=latency,
        target_cpu_pct=0.0,
        generator_cpu_pct=0.0,
        system_cpu_pct=0.0,
        generator_lag_p99_ms=0.0,
        generator_lag_max_ms=0.0,
        loadavg_before=(0.0, 0.0, 0.0),
        loadavg_after=(0.0, 0.0, 0.0),
    )


class TestMediansAndRatios:
    def test_should_take_the_median_of_what_was_measured(self) -> None:
        assert median_of([3.0, None, 1.0, math.nan, 2.0]) == 2.0
        assert math.isnan(median_of([None, math.nan]))

    def test_should_compare_phases_within_each_repetition(self) -> None:
        phases = {
            phase_key("a", 1): phase(2, 10, 20),
            phase_key("b", 1): phase(4, 30, 80),
            phase_key("a", 2): phase(2, 20, 40),
            phase_key("b", 2): phase(2, 20, 40),
            phase_key("c", 2): phase(8, 200, 400),
        }
        ratios = phase_ratios(phases, repetitions=2)
        assert ratios[("b", "a")] == {"p50": [2.0, 1.0], "p95": [3.0, 1.0], "p99": [4.0, 1.0]}
        # c ran only in repetition 2: one ratio each, never a c of one repetition over another's a.
        assert ratios[("c", "a")]["p95"] == [10.0]
        assert ratios[("c", "b")]["p99"] == [10.0]


class TestInlineRequest:
    def test_should_accept_a_daily_run_with_a_time_bound(self) -> None:
        kind, start, seconds = _run_request(
            {"kind": "daily", "period_start": "2026-03-02", "max_seconds": 30}
        )
        assert (kind, start, seconds) == ("daily", DAY, 30.0)

    @pytest.mark.parametrize(
        "body",
        [
            [],
            {"kind": "monthly", "period_start": "2026-03-02"},
            {"kind": "weekly", "period_start": "2026-03-03"},  # a Tuesday
            {"period_start": "yesterday"},
            {"period_start": "2026-03-02", "max_seconds": True},
            {"period_start": "2026-03-02", "max_seconds": 0},
        ],
    )
    def test_should_refuse_what_cannot_be_run(self, body: object) -> None:
        with pytest.raises(ValueError, match=r"."):
            _run_request(body)
