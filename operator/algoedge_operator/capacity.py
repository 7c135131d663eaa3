"""Reads a tenant's demand from the API's ``GET /internal/v1/capacity`` (the scalers' only input)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

#: The most the operator reads of a capacity answer. A real one is a few hundred bytes (three
#: counts and one per queue); an API that sends more is broken or not the API, and is treated
#: like one that does not answer, rather than held in the operator's memory whole.
MAX_ANSWER_BYTES = 64 * 1024


class CapacityError(Exception):
    """The endpoint could not be read; the message is short and stable (it lands in a condition)."""


@dataclass(frozen=True)
class CapacityReport:
    linked_accounts: int
    connected_accounts: int
    queue_backlog: Mapping[str, int]
    #: socket.io connections to the tenant's API pods; None while the API does not report them
    #: (the key is optional: ``status.capacity`` then shows no utilisation).
    connected_sockets: int | None = None

    @property
    def total_backlog(self) -> int:
        return sum(self.queue_backlog.values())


def _count(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CapacityError(f"answer has no non-negative integer {key!r}")
    return value


def parse_capacity(payload: Any) -> CapacityReport:
    """The report in ``payload``; CapacityError if it breaks the contract in docs/architecture.md."""
    if not isinstance(payload, Mapping):
        raise CapacityError("answer is not a JSON object")
    backlog = payload.get("queue_backlog", {})
    if not isinstance(backlog, Mapping):
        raise CapacityError("answer's 'queue_backlog' is not an object")
    queues = {}
    for queue, count in backlog.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise CapacityError("answer's 'queue_backlog' has a non-integer count")
        queues[str(queue)] = count
    return CapacityReport(
        linked_accounts=_count(payload, "linked_accounts"),
        connected_accounts=_count(payload, "connected_accounts"),
        queue_backlog=queues,
        connected_sockets=(
            _count(payload, "connected_sockets") if "connected_sockets" in payload else None
        ),
    )


async def _bounded_body(response: aiohttp.ClientResponse) -> bytes:
    """The body, or CapacityError once it exceeds :data:`MAX_ANSWER_BYTES` (declared or sent)."""
    too_large = CapacityError(f"answer is larger than {MAX_ANSWER_BYTES} bytes")
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise too_large
    return bytes(body)


async def read_capacity(
    session: aiohttp.ClientSession, url: str, *, token: str, timeout_seconds: float
) -> CapacityReport:
    try:
        async with session.get(
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            if response.status != 200:
                raise CapacityError(f"HTTP {response.status}")
            payload = json.loads(await _bounded_body(response))
    except TimeoutError:
        raise CapacityError("timed out") from None
    except aiohttp.ClientError as error:
        raise CapacityError(type(error).__name__) from None
    except (ValueError, RecursionError):
        # RecursionError: JSON nested deeper than the parser's stack, within the size bound.
        raise CapacityError("answer is not JSON") from None
    return parse_capacity(payload)
