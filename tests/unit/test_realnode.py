"""The real node's pure parts: how `up` reads kube-router's log to know NetworkPolicies are
enforced (the node itself runs in tests/e2e/realnode)."""

from __future__ import annotations

import pytest

from devtools.controlplane import realnode

STARTED = 'I1202 11:00:00.000000 1 network_policy_controller.go:163] "Starting network policy controller"\n'
SYNCED = "I1202 11:00:01.000000 1 network_policy_controller.go:237] sync iptables took 80.1ms\n"
ABORTED = (
    "E1202 11:00:01.000000 1 network_policy_controller.go:312] Aborting sync. Failed to run "
    "iptables-restore: exit status 2\n"
)


def test_kube_router_is_not_synced_before_its_first_full_sync() -> None:
    assert not realnode.kube_router_synced(STARTED)


def test_kube_router_is_synced_after_a_full_sync() -> None:
    assert realnode.kube_router_synced(STARTED + SYNCED)


def test_an_aborted_sync_fails_with_kube_routers_error_line() -> None:
    with pytest.raises(realnode.NodeError, match="Failed to run iptables-restore: exit status 2"):
        realnode.kube_router_synced(STARTED + ABORTED + SYNCED)
