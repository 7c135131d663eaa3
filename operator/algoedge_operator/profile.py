"""Capacity profiles: the sizes an ``AlgoEdgeTenant`` gets from ``expectedUsers`` when it leaves them unset.

The table is documented in docs/operator.md; explicit fields in the spec always win.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Users one API pod serves within the latency target: the default of the operator's
#: ALGOEDGE_OPERATOR_API_USERS_PER_POD (status.capacity) and of the sockets-near-capacity alert
#: (docs/benchmarks.md, the 500-user run: p95 9.8 ms, 0 errors, 500/500 sockets on one process;
#: 2,000 was not served within p95 < 200 ms).
USERS_PER_API_POD = 500

_MEMORY_UNITS_KIB = {"Ki": 1, "Mi": 1024, "Gi": 1024 * 1024}


def mebibytes(quantity: str) -> int:
    """A memory quantity in the form the CRD allows (``<n>Ki``, ``<n>Mi``, ``<n>Gi``) in whole
    MiB, rounded down."""
    amount, unit = quantity[:-2], quantity[-2:]
    if unit not in _MEMORY_UNITS_KIB or not amount.isdigit():
        raise ValueError(f"not a memory quantity in Ki, Mi or Gi: {quantity!r}")
    return int(amount) * _MEMORY_UNITS_KIB[unit] // 1024


@dataclass(frozen=True)
class Resources:
    """Container requests and limits in canonical Kubernetes quantity form."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    @property
    def memory_limit_mib(self) -> int:
        return mebibytes(self.memory_limit)

    def as_manifest(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class CapacityProfile:
    """Defaults for one size class of tenant."""

    #: Short name shown in docs and events.
    name: str
    #: The largest ``expectedUsers`` this profile serves (None: no upper bound).
    up_to_users: int | None
    api_min_replicas: int
    api_max_replicas: int
    api_resources: Resources
    worker_min_replicas: int
    worker_max_replicas: int
    #: pgBouncer ``default_pool_size``: server connections per database/user pair.
    pool_default_size: int
    #: pgBouncer ``max_client_conn``: at least api max replicas x the app's pool max (10) + workers.
    pool_max_client_connections: int
    #: Redis ``maxmemory`` in MiB; the container gets this plus REDIS_OVERHEAD_MIB.
    redis_max_memory_mib: int


PROFILES: tuple[CapacityProfile, ...] = (
    CapacityProfile(
        name="small",
        up_to_users=100,
        api_min_replicas=1,
        api_max_replicas=3,
        api_resources=Resources("100m", "256Mi", "1", "512Mi"),
        worker_min_replicas=1,
        worker_max_replicas=2,
        pool_default_size=10,
        pool_max_client_connections=200,
        redis_max_memory_mib=128,
    ),
    CapacityProfile(
        name="medium",
        up_to_users=250,
        api_min_replicas=2,
        api_max_replicas=5,
        api_resources=Resources("250m", "384Mi", "1", "768Mi"),
        worker_min_replicas=1,
        worker_max_replicas=4,
        pool_default_size=20,
        pool_max_client_connections=500,
        redis_max_memory_mib=256,
    ),
    CapacityProfile(
        name="large",
        up_to_users=None,
        api_min_replicas=3,
        api_max_replicas=10,
        api_resources=Resources("500m", "512Mi", "2", "1Gi"),
        worker_min_replicas=2,
        worker_max_replicas=8,
        pool_default_size=40,
        pool_max_client_connections=1000,
        redis_max_memory_mib=512,
    ),
)

#: Redis needs room beside its dataset (buffers, AOF rewrite); the container limit adds this.
REDIS_OVERHEAD_MIB = 64


def profile_for(expected_users: int) -> CapacityProfile:
    """The smallest profile whose ``up_to_users`` covers ``expected_users``."""
    for profile in PROFILES:
        if profile.up_to_users is None or expected_users <= profile.up_to_users:
            return profile
    raise AssertionError("the last profile has no upper bound")  # pragma: no cover
