"""Which replica owns which account: rendezvous (highest-random-weight) hashing over live members.

Pure: a membership change moves only the accounts whose highest weight belonged to a member that
left, or now belongs to one that joined; every replica that sees the same members agrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(member: str, key: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(key: str | int, members: Iterable[str]) -> str | None:
    """The member with the highest weight for ``key`` (ties by name); None without members."""
    text = str(key)
    return max(members, key=lambda m: (_weight(m, text), m), default=None)
