"""Membership and account leases in Redis: the only code that reads or writes the bridge's keys.

- Members: ``algoedge:bridge:members``, a sorted set of pod name -> expiry in Redis server time
  (ms). A heartbeat re-adds this member, drops expired ones and returns the live set, in one script.
- Leases: ``algoedge:bridge:lease:<account id>`` = ``<pod>/<incarnation>`` with a PX TTL. A
  replica connects an account only while it holds the lease. Release is compare-and-set to
  ``released`` (still with the TTL), so the next owner knows nobody holds the account and may
  connect at once; a lease found *absent* (expired, or Redis lost its data) is "cold": the
  taker waits until any previous holder must have noticed and closed (docs/bridge.md).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis

from algoedge.keys import BRIDGE_CONNECTED_KEY, BRIDGE_MEMBERS_KEY, bridge_lease_key

RELEASED = "released"

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
else
  redis.call('ZREM', KEYS[1], ARGV[3])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# ARGV: holder, ttl ms, pod prefix ("<pod>/"). Per key: 'cold', 'warm' or 'busy'.
_ACQUIRE = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  if not v then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 'cold'
  elseif v == ARGV[1] or v == 'released' or string.sub(v, 1, string.len(ARGV[3])) == ARGV[3] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    out[i] = 'warm'
  else
    out[i] = 'busy'
  end
end
return out
"""

# ARGV: holder, ttl ms. Per key: 1 renewed, 0 lost.
_RENEW = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# ARGV: holder, ttl ms. Marks released only what this holder still holds.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('SET', key, 'released', 'PX', ARGV[2])
    n = n + 1
  end
end
return n
"""


class Taken(enum.Enum):
    """How an acquired lease was found: released or ours (warm), or absent (cold)."""

    WARM = "warm"
    COLD = "cold"


class Leases:
    """One replica's view of the bridge's Redis keys."""

    def __init__(self, redis: Redis, *, member: str, incarnation: str, ttl: float) -> None:
        self._redis = redis
        self.member = member
        self.holder = f"{member}/{incarnation}"
        self._ttl_ms = int(ttl * 1000)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def heartbeat(self, *, present: bool = True) -> list[str]:
        """Register (or, with ``present=False``, deregister) this member; the live members."""
        members = await self._heartbeat(
            keys=[BRIDGE_MEMBERS_KEY], args=[self._ttl_ms, "1" if present else "0", self.member]
        )
        return [str(m) for m in members]

    async def acquire(self, account_ids: Sequence[int]) -> dict[int, Taken]:
        """Take the free leases among ``account_ids``; those held by others are left out."""
        if not account_ids:
            return {}
        answers = await self._acquire(
            keys=[bridge_lease_key(a) for a in account_ids],
            args=[self.holder, self._ttl_ms, f"{self.member}/"],
        )
        return {a: Taken(str(r)) for a, r in zip(account_ids, answers, strict=True) if r != "busy"}

    async def renew(self, account_ids: Sequence[int]) -> set[int]:
        """Extend the held leases; returns the ids whose lease this replica no longer holds."""
        if not account_ids:
            return set()
        answers = await self._renew(
            keys=[bridge_lease_key(a) for a in account_ids], args=[self.holder, self._ttl_ms]
        )
        return {a for a, ok in zip(account_ids, answers, strict=True) if not int(ok)}

    async def release(self, account_ids: Iterable[int]) -> int:
        keys = [bridge_lease_key(a) for a in account_ids]
        if not keys:
            return 0
        return int(await self._release(keys=keys, args=[self.holder, self._ttl_ms]))

    async def report_connected(self, connected: Iterable[int], gone: Iterable[int]) -> None:
        """Refresh ``algoedge:bridge:connected`` (the capacity endpoint's count)."""
        now = time.time()
        scores = {str(a): now for a in connected}
        removed = [str(a) for a in gone]
        async with self._redis.pipeline(transaction=False) as pipe:
            if scores:
                pipe.zadd(BRIDGE_CONNECTED_KEY, scores)
            if removed:
                pipe.zrem(BRIDGE_CONNECTED_KEY, *removed)
            if scores or removed:
                await pipe.execute()
