"""Faults injected at run time through /admin/faults: rate limiting, latency, refusals, stalls."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

Refusal = Literal["E_AUTH", "E_SRV_NOT_FOUND"]
REFUSAL_MESSAGES: dict[Refusal, str] = {
    "E_AUTH": "Failed to authenticate to the trading account: invalid login or password",
    "E_SRV_NOT_FOUND": "The MetaTrader server was not found; check the server name",
}


@dataclass(slots=True)
class Faults:
    """What is currently injected; every field starts off."""

    rng: random.Random
    #: Fraction (0-1) of REST and socket requests answered 429 TooManyRequestsError.
    throttle_fraction: float = 0.0
    #: Seconds from now the 429 recommends retrying after.
    throttle_retry_seconds: float = 1.0
    #: Extra delay before every answer, on top of ALGOEDGE_SIM_LATENCY_MS.
    latency_ms: int = 0
    #: Account ids whose broker credentials are refused.
    refused_accounts: dict[str, Refusal] = field(default_factory=dict)
    #: Server names the broker does not know.
    refused_servers: set[str] = field(default_factory=set)
    #: Sockets that get no more answers or packets (the transport stays open).
    stalled_sockets: set[str] = field(default_factory=set)

    def throttled(self) -> bool:
        """Whether this request draws a 429."""
        return self.throttle_fraction > 0 and self.rng.random() < self.throttle_fraction

    def refusal(self, *, account_id: str, server: str) -> Refusal | None:
        if server in self.refused_servers:
            return "E_SRV_NOT_FOUND"
        return self.refused_accounts.get(account_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "tooManyRequests": {
                "fraction": self.throttle_fraction,
                "retryAfterSeconds": self.throttle_retry_seconds,
            },
            "latencyMs": self.latency_ms,
            "refusedAccounts": dict(self.refused_accounts),
            "refusedServers": sorted(self.refused_servers),
            "stalledSockets": sorted(self.stalled_sockets),
        }

    def reset(self) -> None:
        self.throttle_fraction, self.throttle_retry_seconds, self.latency_ms = 0.0, 1.0, 0
        self.refused_accounts.clear()
        self.refused_servers.clear()
        self.stalled_sockets.clear()
