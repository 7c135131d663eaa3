"""Inputs that both sides of a contract must judge alike: the CRD's CEL rule (run by a real API
server in tests/e2e) and the app's own parser (tests/unit/test_contract.py)."""

from __future__ import annotations

#: ``spec.trustedProxies`` entries → whether the CRD admits them, which must be whether the API
#: starts with them in ``ALGOEDGE_TRUSTED_PROXIES`` (an entry one admits and the other refuses
#: is a tenant whose API pods crash-loop).
TRUSTED_PROXY_CASES: tuple[tuple[str, bool], ...] = (
    ("10.0.0.0/8", True),
    ("192.168.1.0/24", True),
    ("203.0.113.7/32", True),
    ("0.0.0.0/0", True),
    ("fd00::/8", True),
    ("2001:db8::/32", True),
    ("2001:db8::1/128", True),
    # Host bits set: an address inside a network, not the network.
    ("10.0.0.1/8", False),
    ("192.168.1.1/24", False),
    ("fd00::1/8", False),
    ("2001:db8::1/32", False),
    # Not a CIDR at all.
    ("not-a-network", False),
    ("10.0.0.0/33", False),
    ("fd00::/129", False),
)
