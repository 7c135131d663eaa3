"""Rate limit values and client addresses: pure parsing, shared by the settings and the limiter.

Kept apart from :mod:`algoedge.ratelimit` (Redis, Prometheus) so that every process, the bridge
included, can validate its settings without the API's dependencies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RATE_FORM: Final = "REQUESTS/SECONDS with positive integers, like 100/900"
MAX_REQUESTS: Final = 1_000_000
MAX_WINDOW_SECONDS: Final = 86_400
MICROS: Final = 1_000_000

# What client_ip answers when the peer address is unknown (a Unix socket, say).
UNKNOWN_CLIENT: Final = "unknown"

_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` per ``window_seconds``, refilled evenly over the window."""

    requests: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise ValueError(f"must allow from 1 to {MAX_REQUESTS} requests")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(f"must have a window from 1 to {MAX_WINDOW_SECONDS} seconds")

    @property
    def interval_us(self) -> float:
        """The GCRA emission interval: how long one request's share of the budget takes to return."""
        return self.window_seconds * MICROS / self.requests

    @property
    def window_us(self) -> int:
        return self.window_seconds * MICROS


def parse_rate(text: str) -> RateLimit:
    """``"100/900"`` → ``RateLimit(100, 900)``; the ValueError's message follows a variable name."""
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"must be {RATE_FORM}")
    return RateLimit(requests=int(match[1]), window_seconds=int(match[2]))


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, fd00::/8"`` → networks; empty → none. A ValueError names the bad entry's position."""
    networks: list[IPNetwork] = []
    for position, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            if "host bits set" in str(exc):
                raise ValueError(
                    f"has host bits set in entry {position}, so it is not a network address"
                ) from None
            raise ValueError(f"has entry {position} that is not a CIDR network") from None
    return tuple(networks)


def _parse_address(text: str) -> IPAddress | None:
    """An address from a peer or an X-Forwarded-For hop, tolerating a port; None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        # "[2001:db8::1]" or "[2001:db8::1]:443"
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        text = host
    elif text.count(":") == 1:
        # "203.0.113.7:51234"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_ip(remote: str | None, forwarded_for: list[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: X-Forwarded-For is believed only as far as trusted proxies vouch.

    ``forwarded_for`` is every X-Forwarded-For header line, in order: a proxy may append a
    line of its own rather than extend the client's, so reading only the first line would let
    the client choose its address. From the direct peer, walk the hops from the right while
    each is a trusted proxy; the first untrusted hop is the client. A malformed hop ends the
    walk at the last good one, so a client cannot choose its own bucket by sending garbage.
    """
    if not remote:
        return UNKNOWN_CLIENT
    peer = _parse_address(remote)
    if peer is None:
        return remote.strip() or UNKNOWN_CLIENT
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return str(peer)
    current = peer
    for hop in reversed(",".join(forwarded_for).split(",")):
        address = _parse_address(hop)
        if address is None:
            break
        current = address
        if not _is_trusted(current, trusted):
            break
    return str(current)


#: The prefix one IPv6 client is limited as: a subscriber is normally given a whole /64, so
#: per-address buckets would let one client spread its requests over 2**64 addresses.
IPV6_CLIENT_PREFIX: Final = 64


def client_network(address: str) -> str:
    """The rate-limit subject of a client address: an IPv4 address itself, an IPv6 address's /64.

    Anything that is not an address (``unknown``, an odd peer) is its own subject."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
