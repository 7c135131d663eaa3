"""The tenant at a glance: the users its API pods can serve against the sockets connected now, and
what it costs a month. Pure arithmetic over what a reconcile saw (docs/operator.md, "Capacity and
cost").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: ``CapacityLow`` turns True above this share of the users the ready API pods can serve.
CAPACITY_LOW_PERCENT = 80
#: A month of the price sheet: 730 hours, as cloud price lists count it.
HOURS_PER_MONTH = 730

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_GIB = Decimal(2**30)


def _amount(quantity: str) -> tuple[Decimal, str]:
    match = _QUANTITY.match(str(quantity).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    return Decimal(match.group(1)), match.group(2)


def cpu_cores(quantity: str) -> Decimal:
    """A CPU quantity (``250m``, ``0.5``, ``2``) in cores."""
    amount, unit = _amount(quantity)
    if unit == "m":
        return amount / 1000
    if unit == "":
        return amount
    raise ValueError(f"not a CPU quantity: {quantity!r}")


def gibibytes(quantity: str) -> Decimal:
    """A memory or storage quantity (``256Mi``, ``1Gi``, ``500M``, bytes) in GiB."""
    amount, unit = _amount(quantity)
    if unit in _BINARY:
        return amount * _BINARY[unit] / _GIB
    if unit in _DECIMAL:
        return amount * _DECIMAL[unit] / _GIB
    raise ValueError(f"not a byte quantity: {quantity!r}")


# -- capacity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    users_per_api_pod: int
    ready_api_pods: int
    #: Sockets connected to the API now (the capacity endpoint's ``connected_sockets``); None
    #: while it does not report them.
    connected_sockets: int | None

    @property
    def users(self) -> int:
        """Users the ready API pods can serve."""
        return self.users_per_api_pod * self.ready_api_pods

    @property
    def utilization_percent(self) -> int | None:
        """Connected sockets as a share of :attr:`users`, rounded up (None when unknown); with
        no ready API pod any socket is over capacity (capped at 999)."""
        if self.connected_sockets is None:
            return None
        if self.users == 0:
            return 0 if self.connected_sockets == 0 else 999
        return min(999, -(-100 * self.connected_sockets // self.users))

    @property
    def low(self) -> bool:
        percent = self.utilization_percent
        return percent is not None and percent > CAPACITY_LOW_PERCENT

    def as_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "usersPerApiPod": self.users_per_api_pod,
            "readyApiPods": self.ready_api_pods,
            "users": self.users,
        }
        if self.connected_sockets is not None:
            status["connectedSockets"] = self.connected_sockets
            status["utilizationPercent"] = self.utilization_percent
        return status

    def condition(self) -> tuple[bool, str, str]:
        """(status, reason, message) of the ``CapacityLow`` condition."""
        percent = self.utilization_percent
        if percent is None:
            return (
                False,
                "SocketsUnknown",
                f"the API pods can serve {self.users} users; the capacity endpoint reports no "
                "connected sockets",
            )
        message = (
            f"{self.connected_sockets} sockets connected against {self.users} users the "
            f"{self.ready_api_pods} ready API pods can serve ({percent}%, "
            f"{self.users_per_api_pod} per pod)"
        )
        if percent > CAPACITY_LOW_PERCENT:
            return True, "AboveThreshold", f"{message}: above {CAPACITY_LOW_PERCENT}%"
        return False, "WithinThreshold", message


# -- cost -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceSheet:
    """Monthly prices (operator settings ``ALGOEDGE_OPERATOR_PRICE_*``)."""

    cpu_core_month: Decimal
    memory_gib_month: Decimal
    storage_gib_month: Decimal
    metaapi_account_month: Decimal
    currency: str


@dataclass(frozen=True)
class CostLine:
    """One row of the cost table: a workload's requests times its replicas, priced."""

    item: str
    replicas: int
    cpu_cores: Decimal
    memory_gib: Decimal
    storage_gib: Decimal
    monthly: Decimal


def _requests(containers: Iterable[Mapping[str, Any]]) -> tuple[Decimal, Decimal]:
    cpu, memory = Decimal(0), Decimal(0)
    for container in containers:
        requests = (container.get("resources") or {}).get("requests") or {}
        cpu += cpu_cores(requests["cpu"]) if "cpu" in requests else Decimal(0)
        memory += gibibytes(requests["memory"]) if "memory" in requests else Decimal(0)
    return cpu, memory


def workload_line(item: str, workload: Mapping[str, Any], prices: PriceSheet) -> CostLine:
    """A Deployment's or StatefulSet's requested CPU and memory (its containers'; init
    containers run only before them) and volume claims, times its ``spec.replicas``."""
    spec = workload.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    pod = ((spec.get("template") or {}).get("spec")) or {}
    cpu, memory = _requests(pod.get("containers") or [])
    storage = sum(
        (
            gibibytes(
                ((claim.get("spec") or {}).get("resources") or {}).get("requests", {})["storage"]
            )
            for claim in spec.get("volumeClaimTemplates") or []
        ),
        Decimal(0),
    )
    cpu, memory, storage = cpu * replicas, memory * replicas, storage * replicas
    monthly = (
        cpu * prices.cpu_core_month
        + memory * prices.memory_gib_month
        + storage * prices.storage_gib_month
    )
    return CostLine(item, replicas, cpu, memory, storage, monthly)


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _figure(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP).normalize())


def monthly_cost(
    workloads: Mapping[str, Mapping[str, Any]], *, linked_accounts: int, prices: PriceSheet
) -> dict[str, Any]:
    """``status.cost``: one row per workload (by component), one for MetaAPI (per linked
    account), and the total, each a monthly amount with two decimals."""
    lines = [workload_line(item, workloads[item], prices) for item in sorted(workloads)]
    metaapi = prices.metaapi_account_month * linked_accounts
    total = sum((line.monthly for line in lines), Decimal(0)) + metaapi
    return {
        "currency": prices.currency,
        "monthlyTotal": _money(total),
        "workloads": [
            {
                "component": line.item,
                "replicas": line.replicas,
                "cpuCores": _figure(line.cpu_cores),
                "memoryGiB": _figure(line.memory_gib),
                "storageGiB": _figure(line.storage_gib),
                "monthly": _money(line.monthly),
            }
            for line in lines
        ],
        "metaapi": {"linkedAccounts": linked_accounts, "monthly": _money(metaapi)},
    }
