"""The read replica: its pool, how far it trails the primary, and whether reads may use it now.

Reads routed here (``Database.read_replica``) go to the replica while it answers and trails the
primary by at most ``ALGOEDGE_DATABASE_READ_MAX_LAG`` seconds; otherwise the primary answers
them. Once a second a watcher notes the primary's WAL write position, then asks the replica how
far it has replayed (:class:`LagClock` turns the two into seconds). It decides again on every
look and logs each change of decision once. A read that fails on the replica is answered by the
primary and, when the connection itself failed, stops replica reads until the watcher sees the
replica answer again; so a replica going away never fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiopg
import psycopg2

from algoedge.db.cursors import pooled_cursor
from algoedge.metrics import DB_REPLICA_LAG, DB_REPLICA_USABLE

log = logging.getLogger(__name__)

#: How often the watcher looks at the primary and the replica.
CHECK_INTERVAL_SECONDS = 1.0
#: How long one look at the replica may take before it counts as not answering. Behind
#: pgBouncer a stopped replica does not refuse a query, it leaves it waiting for a server.
PROBE_TIMEOUT_SECONDS = 2.0
#: At most this many distinct primary positions are remembered (over two hours at one a second).
MAX_NOTES = 8192

#: Where replica reads go: ``usable`` (the replica) or why not (the primary answers them).
ReplicaState = Literal["usable", "lag", "unreachable", "not_standby"]

#: A replica read that failed for one of these is answered by the primary instead. Anything else
#: (a programming error, bad data) is a bug and is raised as it is.
READ_FAILURES: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    OSError,
    TimeoutError,
)

_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)
_ROW_LOCK = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.IGNORECASE)


def check_read_only(sql: str) -> None:
    """Refuse anything but a plain SELECT: a replica cannot write or lock rows, and a fallback to
    the primary must never turn a replica read into a write."""
    if not _SELECT.match(sql) or _ROW_LOCK.search(sql):
        raise ValueError(
            "read_replica runs plain SELECT statements only; writes and row locks go through "
            "cursor() or transaction()"
        )


def parse_lsn(text: str) -> int:
    """A WAL position as Postgres prints it (``16/B374D848``) as one integer."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class _Note:
    lsn: int
    first_seen: float
    last_seen: float


class LagClock:
    """How stale a replica is, in seconds, from WAL positions alone (pure: times are passed in).

    Every transaction the primary had committed when its write position was noted is visible on
    the replica once the replica has replayed up to that position. So the replica is at most
    ``now - t`` behind, ``t`` being the last time the primary was seen at a position the replica
    has reached. An idle primary's position stands still, the replica reaches it and the lag
    stays near zero, where ``now() - pg_last_xact_replay_timestamp()`` would grow without bound
    and send every read to the primary. A replica behind every noted position is at least as far
    behind as the oldest of them.
    """

    def __init__(self, *, max_notes: int = MAX_NOTES) -> None:
        self._notes: deque[_Note] = deque(maxlen=max_notes)

    def note_primary(self, lsn: int, *, at: float) -> None:
        """The primary's write position was ``lsn`` at time ``at``."""
        if self._notes and self._notes[-1].lsn == lsn:
            self._notes[-1].last_seen = at
        else:
            self._notes.append(_Note(lsn, first_seen=at, last_seen=at))

    def lag(self, replayed: int, *, now: float) -> float | None:
        """Seconds the replica, replayed up to ``replayed``, trails the primary; None before any
        note."""
        reached: _Note | None = None
        while self._notes and self._notes[0].lsn <= replayed:
            reached = self._notes.popleft()
        if reached is not None:
            # Kept: the replica may be asked again before the primary moves on.
            self._notes.appendleft(reached)
            return max(0.0, now - reached.last_seen)
        if not self._notes:
            return None
        return max(0.0, now - self._notes[0].first_seen)


class Replica:
    """The replica's pool and the decision where replica reads go, looked at again every second."""

    def __init__(
        self,
        pool: aiopg.Pool,
        *,
        max_lag: float,
        primary_position: Callable[[], Awaitable[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._max_lag = max_lag
        self._primary_position = primary_position
        self._clock = clock
        self._lags = LagClock()
        #: None until the first look.
        self._state: ReplicaState | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def state(self) -> ReplicaState | None:
        return self._state

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async with pooled_cursor(self._pool) as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    def read_failed(self, error: BaseException) -> None:
        """A replica read failed (the primary answers it). A lost connection stops replica reads
        until the watcher sees the replica answer; an error the server sent (a query cancelled by
        a recovery conflict) concerns that query alone."""
        code = getattr(error, "pgcode", None)
        if code is None or code.startswith(("08", "57P")):
            self._decide("unreachable", f"a read failed: {type(error).__name__}")
        else:
            log.warning("a read failed on the replica (%s); the primary answered it", code)

    async def check(self) -> None:
        """One look: the primary's position, then the replica's; decides where reads go."""
        # The time before the question: the answer includes every commit made before it.
        asked = self._clock()
        try:
            position = await self._primary_position()
        except READ_FAILURES as error:
            # Without the primary's position the lag cannot be known; keeping the decision keeps
            # replica reads going while only the primary is away.
            log.debug("read replica check skipped, the primary did not answer: %r", error)
            return
        self._lags.note_primary(parse_lsn(position), at=asked)
        try:
            in_recovery, replayed = await asyncio.wait_for(self._position(), PROBE_TIMEOUT_SECONDS)
        except READ_FAILURES as error:
            DB_REPLICA_LAG.set(math.nan)
            self._decide("unreachable", f"it did not answer: {type(error).__name__}")
            return
        if not in_recovery or replayed is None:
            DB_REPLICA_LAG.set(math.nan)
            self._decide("not_standby", "it is not a standby replaying the primary's WAL")
            return
        lag = self._lags.lag(parse_lsn(replayed), now=self._clock())
        assert lag is not None  # the primary was noted just before
        DB_REPLICA_LAG.set(lag)
        # Back in use only at half the bound, so a lag hovering at the bound does not flap.
        bound = self._max_lag if self._state == "usable" else self._max_lag / 2
        if lag <= bound:
            self._decide("usable", f"{lag:.1f} s behind the primary")
        else:
            self._decide("lag", f"{lag:.1f} s behind the primary (bound {self._max_lag:g} s)")

    async def _position(self) -> tuple[bool, str | None]:
        async with pooled_cursor(self._pool) as cur:
            await cur.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text")
            in_recovery, replayed = await cur.fetchone()
        return bool(in_recovery), replayed

    def _decide(self, state: ReplicaState, detail: str) -> None:
        if state == self._state:
            return
        self._state = state
        DB_REPLICA_USABLE.set(1 if state == "usable" else 0)
        if state == "usable":
            log.info("read replica in use: %s", detail)
        else:
            log.warning(
                "read replica not used (%s), the primary answers its reads: %s", state, detail
            )

    async def _look(self) -> None:
        try:
            await self.check()
        except Exception:
            # Never leave a stale decision standing: an unforeseen error sends reads to the
            # primary (counted there as fallbacks) until a look succeeds.
            log.exception("read replica check failed")
            self._decide("unreachable", "its check failed")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)
            await self._look()

    async def start(self) -> None:
        """The first look (so the first reads are routed knowingly), then one every
        CHECK_INTERVAL_SECONDS until :meth:`close`."""
        await self._look()
        self._watcher = asyncio.create_task(self._watch(), name="read-replica-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        DB_REPLICA_USABLE.set(0)
        self._pool.close()
        await self._pool.wait_closed()
