"""The API's connected sockets as the capacity endpoint sums them (algoedge.capacity)."""

from __future__ import annotations

from algoedge.capacity import fresh_socket_count
from algoedge.keys import API_SOCKETS_STALE_SECONDS

NOW = 1_700_000_000.0


def test_should_sum_the_fresh_counts_of_every_process() -> None:
    entries = {b"api-0:1": b"120 1700000000", "api-1:1": f"80 {int(NOW) - 5}"}
    assert fresh_socket_count(entries, now=NOW) == 200


def test_should_ignore_a_stale_or_unreadable_entry() -> None:
    stale = int(NOW - API_SOCKETS_STALE_SECONDS)
    entries = {
        "gone:1": f"500 {stale}",
        "bad:1": "many",
        "neg:1": f"-3 {int(NOW)}",
        "ok:1": f"7 {int(NOW)}",
    }
    assert fresh_socket_count(entries, now=NOW) == 7


def test_should_be_zero_without_entries() -> None:
    assert fresh_socket_count({}, now=NOW) == 0
