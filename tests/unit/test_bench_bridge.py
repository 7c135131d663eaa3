"""The pure helpers of the bridge benchmark: counters, trade-event latency, recovery bookkeeping."""

from __future__ import annotations

import math

from bench.bridge_load import Progress, mean_delta_ms, scrape_metrics
from bench.bridge_stats import (
    InFlight,
    PerSecond,
    markdown_table,
    per_account_kib,
    trade_event_latency,
)


class TestPerSecond:
    def test_should_report_the_busiest_second_since_the_mark(self) -> None:
        counter = PerSecond()
        for at in (10.1, 10.5, 10.9, 11.2):
            counter.add(at)
        assert (counter.peak, counter.total) == (3, 4)
        counter.mark()
        counter.add(12.0)
        assert (counter.peak, counter.total) == (1, 5)


class TestInFlight:
    def test_should_count_the_peak_and_ignore_a_repeated_finish(self) -> None:
        syncs = InFlight()
        syncs.start("a")
        syncs.start("b")
        syncs.finish("a")
        syncs.finish("a")
        syncs.start("c")
        assert (syncs.now, syncs.peak) == (2, 2)
        syncs.finish_where(lambda key: key in ("b", "c"))
        syncs.mark()
        assert (syncs.now, syncs.peak) == (0, 0)


class TestTradeEventLatency:
    def test_should_measure_from_the_time_of_the_deal_the_event_carries(self) -> None:
        opened = {"opened_at": "2026-03-02T10:00:00.250000+00:00", "closed_at": None}
        closed = {"opened_at": "2026-03-02T09:00:00+00:00", "closed_at": "2026-03-02T10:00:00Z"}
        at = 1772445600.0  # 2026-03-02T10:00:00Z
        opened_latency = trade_event_latency("trade.opened", opened, at + 0.3)
        closed_latency = trade_event_latency("trade.closed", closed, at + 0.02)
        assert opened_latency is not None
        assert closed_latency is not None
        assert math.isclose(opened_latency, 0.05, abs_tol=1e-6)
        assert math.isclose(closed_latency, 0.02, abs_tol=1e-6)

    def test_should_ignore_other_events_and_payloads_without_the_time(self) -> None:
        assert trade_event_latency("account.status", {"opened_at": "2026-03-02"}, 0) is None
        assert trade_event_latency("trade.closed", {"closed_at": None}, 0) is None
        assert trade_event_latency("trade.opened", "not a payload", 0) is None


class TestProgress:
    def test_should_time_a_recovery_only_after_the_view_dropped(self) -> None:
        storm = Progress(accounts=3, after_dip=True)
        assert not storm.observe(0.5, design=3, provider=0, in_flight=0)
        assert not storm.observe(1.0, design=1, provider=2, in_flight=4)
        assert storm.observe(2.0, design=3, provider=3, in_flight=0)
        assert (storm.design_all, storm.provider_all, storm.design_min) == (2.0, 2.0, 1)
        assert storm.sampled_in_flight_max == 4

    def test_should_stop_waiting_for_a_view_that_never_dropped(self) -> None:
        storm = Progress(accounts=3, after_dip=True)
        storm.observe(0.5, design=3, provider=0, in_flight=0)
        assert not storm.observe(1.0, design=3, provider=3, in_flight=0)
        assert storm.observe(6.0, design=3, provider=3, in_flight=0)
        assert storm.design_all is None
        assert (storm.provider_all, storm.design_min, storm.design_first) == (1.0, 3, 0.5)

    def test_should_time_connecting_from_nothing_without_a_drop(self) -> None:
        connect = Progress(accounts=2, after_dip=False)
        assert not connect.observe(1.0, design=0, provider=1, in_flight=1)
        assert not connect.observe(2.0, design=1, provider=2, in_flight=1)
        assert connect.observe(3.0, design=2, provider=2, in_flight=0)
        assert (connect.design_first, connect.design_all, connect.provider_all) == (2.0, 3.0, 2.0)


class TestMetrics:
    def test_should_read_labelled_samples_and_a_histogram_mean_between_scrapes(self) -> None:
        text = (
            "# TYPE algoedge_bridge_trades_total counter\n"
            'algoedge_bridge_trades_total{outcome="opened"} 7.0\n'
            "# TYPE algoedge_bridge_publish_lag_seconds histogram\n"
            'algoedge_bridge_publish_lag_seconds_bucket{le="+Inf"} 4.0\n'
            "algoedge_bridge_publish_lag_seconds_count 4.0\n"
            "algoedge_bridge_publish_lag_seconds_sum 0.1\n"
        )
        after = scrape_metrics(text)
        assert after["algoedge_bridge_trades_total{outcome=opened}"] == 7.0
        before = {
            "algoedge_bridge_publish_lag_seconds_count": 2.0,
            "algoedge_bridge_publish_lag_seconds_sum": 0.06,
        }
        lag = mean_delta_ms(before, after, "algoedge_bridge_publish_lag_seconds")
        assert math.isclose(lag, 20.0)
        assert math.isnan(mean_delta_ms(after, after, "algoedge_bridge_publish_lag_seconds"))


def test_should_divide_the_growth_of_resident_memory_by_the_accounts() -> None:
    assert per_account_kib(100_000, 150_000, 100) == 500.0
    assert math.isnan(per_account_kib(None, 150_000, 100))


def test_should_render_a_markdown_table_with_numbers_right_aligned() -> None:
    table = markdown_table(["design", "s"], [["bridge", "1.0"]])
    assert table.splitlines() == ["| design | s |", "| --- | ---: |", "| bridge | 1.0 |"]
