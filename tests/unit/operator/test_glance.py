"""The tenant at a glance: capacity and monthly cost arithmetic (algoedge_operator.glance).

The analysis's sizing tables (users per configuration, monthly cost) are not in this repository,
so the expectations below are hand-computed from the documented default price sheet
(docs/operator.md, "Capacity and cost") and the benchmark's per-pod figure (docs/benchmarks.md).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from algoedge_operator.glance import (
    Capacity,
    PriceSheet,
    cpu_cores,
    gibibytes,
    monthly_cost,
)
from algoedge_operator.settings import OperatorSettings

DEFAULTS = OperatorSettings()
PRICES = PriceSheet(
    cpu_core_month=Decimal(str(DEFAULTS.price_cpu_core_month)),
    memory_gib_month=Decimal(str(DEFAULTS.price_memory_gib_month)),
    storage_gib_month=Decimal(str(DEFAULTS.price_storage_gib_month)),
    metaapi_account_month=Decimal(str(DEFAULTS.price_metaapi_account_month)),
    currency="USD",
)


def workload(
    replicas: int, *containers: tuple[str, str], storage: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {
            "spec": {
                "containers": [
                    {"name": f"c{i}", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
                    for i, (cpu, memory) in enumerate(containers)
                ],
                # Init containers finish before the pod serves: not priced.
                "initContainers": [{"name": "migrate", "resources": {"requests": {"cpu": "4"}}}],
            }
        },
    }
    if storage is not None:
        spec["volumeClaimTemplates"] = [{"spec": {"resources": {"requests": {"storage": storage}}}}]
    return {"spec": spec}


class TestQuantities:
    @pytest.mark.parametrize(
        ("quantity", "cores"), [("250m", "0.25"), ("1", "1"), ("0.5", "0.5"), ("2", "2")]
    )
    def test_should_read_cpu_in_cores(self, quantity: str, cores: str) -> None:
        assert cpu_cores(quantity) == Decimal(cores)

    @pytest.mark.parametrize(
        ("quantity", "gib"),
        [("256Mi", "0.25"), ("1Gi", "1"), ("1536Mi", "1.5"), ("1073741824", "1")],
    )
    def test_should_read_bytes_in_gib(self, quantity: str, gib: str) -> None:
        assert gibibytes(quantity) == Decimal(gib)

    @pytest.mark.parametrize("quantity", ["1x", "abc", "", "1Mi"])
    def test_should_refuse_what_is_not_a_cpu_quantity(self, quantity: str) -> None:
        with pytest.raises(ValueError, match="quantity"):
            cpu_cores(quantity)


class TestCapacity:
    def test_should_serve_the_benchmarked_users_per_ready_pod(self) -> None:
        # docs/benchmarks.md: one API process served 500 users within p95 < 200 ms.
        assert DEFAULTS.api_users_per_pod == 500
        capacity = Capacity(users_per_api_pod=500, ready_api_pods=3, connected_sockets=None)
        assert capacity.users == 1500
        assert capacity.as_status() == {"usersPerApiPod": 500, "readyApiPods": 3, "users": 1500}
        assert capacity.condition()[:2] == (False, "SocketsUnknown")

    @pytest.mark.parametrize(
        ("sockets", "percent", "low"),
        [(0, 0, False), (800, 80, False), (801, 81, True), (1000, 100, True), (1, 1, False)],
    )
    def test_should_be_low_above_80_percent(self, sockets: int, percent: int, low: bool) -> None:
        capacity = Capacity(users_per_api_pod=500, ready_api_pods=2, connected_sockets=sockets)
        assert capacity.utilization_percent == percent
        assert capacity.low is low
        assert capacity.condition()[0] is low

    def test_should_be_low_with_sockets_and_no_ready_pod(self) -> None:
        capacity = Capacity(users_per_api_pod=500, ready_api_pods=0, connected_sockets=3)
        assert (capacity.users, capacity.utilization_percent, capacity.low) == (0, 999, True)


class TestCost:
    def test_should_price_requests_replicas_storage_and_accounts_by_hand(self) -> None:
        cost = monthly_cost(
            {
                # 2 x (250m, 512Mi): 0.5 core x 16.00 + 1 GiB x 2.15 = 10.15
                "api": workload(2, ("250m", "512Mi")),
                # 1 x (100m + 10m, 256Mi + 16Mi) + 1Gi: 1.76 + 0.57109375 + 0.10 = 2.43109375
                "redis": workload(1, ("100m", "256Mi"), ("10m", "16Mi"), storage="1Gi"),
            },
            linked_accounts=10,  # 10 x 15.00 = 150.00
            prices=PRICES,
        )
        assert cost == {
            "currency": "USD",
            "monthlyTotal": "162.58",  # 10.15 + 2.43109375 + 150 = 162.58109375
            "workloads": [
                {
                    "component": "api",
                    "replicas": 2,
                    "cpuCores": "0.5",
                    "memoryGiB": "1",
                    "storageGiB": "0",
                    "monthly": "10.15",
                },
                {
                    "component": "redis",
                    "replicas": 1,
                    "cpuCores": "0.11",
                    "memoryGiB": "0.266",
                    "storageGiB": "1",
                    "monthly": "2.43",
                },
            ],
            "metaapi": {"linkedAccounts": 10, "monthly": "150.00"},
        }

    def test_should_cost_nothing_at_zero_replicas_and_no_accounts(self) -> None:
        cost = monthly_cost(
            {"bridge": workload(0, ("100m", "256Mi"))}, linked_accounts=0, prices=PRICES
        )
        assert cost["monthlyTotal"] == "0.00"
