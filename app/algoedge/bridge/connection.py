"""One owned account's connection: provision, deploy, connect and synchronize through the bounded
queue, then watch it; retries back off with full jitter and honour MetaAPI's 429 advice.

An :class:`AccountRunner` exists only while its replica holds the account's lease; cancelling it
closes the SDK connection (``finally``) before the lease is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from algoedge.bridge import metrics
from algoedge.bridge.backoff import Backoff, retry_after
from algoedge.cancellation import honour_cancellation
from algoedge.db.bridge import LinkedAccount

log = logging.getLogger(__name__)

#: A connected account with no packet (prices, status, updates) for this long is reconnected by
#: the bridge; MetaAPI sends a status packet at least every 60 s.
STALE_AFTER = 90.0
#: How long deploy, broker connection and the first synchronization may each take.
STEP_TIMEOUT = 120
#: Refusals that no retry can fix: only the user editing the account can.
REFUSALS = {
    "E_AUTH": "the broker refused the login or password",
    "E_SRV_NOT_FOUND": "the MetaTrader server was not found; check the server name",
}


class Refused(Exception):
    """MetaAPI or the broker refused the account for good; the message is for the user."""


class Superseded(Exception):
    """The account's credentials changed or it was unlinked while this attempt ran."""


class ConnectQueue:
    """At most ``limit`` accounts provision, connect and synchronize at once in this replica."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self._waiting += 1
        metrics.QUEUE_WAITING.set(self._waiting)
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
            metrics.QUEUE_WAITING.set(self._waiting)
        try:
            yield
        finally:
            self._slots.release()


class SyncTracker:
    """Synchronizations in flight in this process (from synchronizationStarted to the deals)."""

    def __init__(self) -> None:
        self._open: set[tuple[int, str]] = set()
        self.peak = 0

    def start(self, account_id: int, instance: str) -> None:
        self._open.add((account_id, instance))
        self.peak = max(self.peak, len(self._open))
        self._publish()

    def finish(self, account_id: int, instance: str | None = None) -> None:
        self._open -= {k for k in self._open if k[0] == account_id and instance in (None, k[1])}
        self._publish()

    def _publish(self) -> None:
        metrics.SYNCS_IN_FLIGHT.set(len(self._open))
        metrics.SYNCS_IN_FLIGHT_MAX.set(self.peak)


@dataclass
class Shared:
    """What every runner of a process uses: the SDK, the queue and the ways out."""

    api: Any
    queue: ConnectQueue
    syncs: SyncTracker
    #: (account, version, state, error) -> None: records and announces a state.
    set_state: Callable[[LinkedAccount, str, str | None], Awaitable[None]]
    #: The MetaAPI account for these credentials: created and stored, or read back.
    provision: Callable[[LinkedAccount], Awaitable[Any]]
    on_deal: Callable[[LinkedAccount, dict[str, Any]], None]
    on_change: Callable[[LinkedAccount, Any], None]
    backoff: Backoff = field(default_factory=Backoff)
    rng: random.Random = field(default_factory=random.Random)


class AccountRunner:
    """Keeps one account connected while its task runs."""

    def __init__(self, account: LinkedAccount, shared: Shared) -> None:
        self.account = account
        self._shared = shared
        self.connection: Any = None
        self.last_packet = time.monotonic()
        self.connected = False
        self._trouble = asyncio.Event()
        self.refused = False
        #: The last close did not confirm: the lease must expire rather than be released.
        self.close_failed = False

    # --- called by the SDK listener -------------------------------------------------------
    def packet(self, kind: str) -> None:
        self.last_packet = time.monotonic()
        metrics.PACKETS.labels(kind).inc()

    def disconnected(self) -> None:
        self._trouble.set()

    # --- the task -------------------------------------------------------------------------
    async def run(self, *, start_delay: float = 0.0) -> None:
        try:
            if start_delay:
                await asyncio.sleep(start_delay)
            await self._keep_connected()
        finally:
            await self._close()

    async def _keep_connected(self) -> None:
        shared = self._shared
        attempt = 0
        while True:
            honour_cancellation()
            delay: float | None = None
            async with shared.queue.slot():
                started = time.monotonic()
                try:
                    await self._connect()
                except Refused as exc:
                    metrics.CONNECTS.labels("failed").inc()
                    self.refused = True
                    await self._set_state("failed", str(exc))
                    return
                except Superseded:
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every SDK failure is retried, counted
                    attempt += 1
                    delay = self._delay_for(exc, attempt)
                    await self._close()
                    await self._set_state("disconnected", _describe(exc))
                else:
                    metrics.SYNC_DURATION.observe(time.monotonic() - started)
                    metrics.CONNECTS.labels("connected").inc()
            if delay is not None:
                log.debug("account %s: retrying in %.1fs", self.account.id, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            reason = await self._watch()
            metrics.RECONNECTS.labels(reason).inc()
            await self._close()
            await self._set_state("disconnected", f"reconnecting: {reason}")
            await asyncio.sleep(shared.backoff.delay(1, shared.rng))

    def _delay_for(self, exc: Exception, attempt: int) -> float:
        from metaapi_cloud_sdk.clients.error_handler import TooManyRequestsException

        if isinstance(exc, TooManyRequestsException):
            metrics.CONNECTS.labels("throttled").inc()
            metrics.TOO_MANY_REQUESTS.inc()
            recommended = (exc.metadata or {}).get("recommendedRetryTime")
            at = _parse_time(recommended)
            return retry_after(at, datetime.now(UTC), self._shared.rng)
        metrics.CONNECTS.labels("retry").inc()
        log.info(
            "account %s: connect failed (%s), attempt %d", self.account.id, _describe(exc), attempt
        )
        return self._shared.backoff.delay(attempt, self._shared.rng)

    async def _connect(self) -> None:
        from metaapi_cloud_sdk.clients.error_handler import ValidationException
        from metaapi_cloud_sdk.clients.timeout_exception import TimeoutException

        shared, account = self._shared, self.account
        try:
            meta = await shared.provision(account)
            honour_cancellation()
            if meta.state not in ("DEPLOYED", "DEPLOYING"):
                await self._set_state("provisioning", None)
                await meta.deploy()
            await meta.wait_deployed(timeout_in_seconds=STEP_TIMEOUT, interval_in_milliseconds=500)
            await self._set_state("connecting", None)
            try:
                await meta.wait_connected(
                    timeout_in_seconds=STEP_TIMEOUT, interval_in_milliseconds=500
                )
            except TimeoutException:
                await meta.reload()
                if meta.connection_status == "DISCONNECTED_FROM_BROKER":
                    raise Refused(REFUSALS["E_AUTH"]) from None
                raise
        except ValidationException as exc:
            raise Refused(_refusal(exc)) from None
        from algoedge.bridge.listener import AccountListener

        self.connection = meta.get_streaming_connection()
        self.connection.add_synchronization_listener(AccountListener(self, shared))
        await self.connection.connect()
        await self._set_state("synchronizing", None)
        await self.connection.wait_synchronized({"timeoutInSeconds": STEP_TIMEOUT})
        self.last_packet = time.monotonic()
        self.connected = True
        self._trouble.clear()
        await self._set_state("connected", None)

    async def _watch(self) -> str:
        """Returns why the connection must be made again: stale, or disconnected for too long."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trouble.wait(), timeout=5.0)
            if time.monotonic() - self.last_packet > STALE_AFTER:
                return "stale"
            if self._trouble.is_set():
                self._trouble.clear()
                self.connected = False
                await self._set_state("disconnected", "MetaAPI disconnected")
                # The SDK resubscribes by itself; give it the stale window before we step in.
                if not await self._recovers_within(STALE_AFTER):
                    return "disconnected"

    async def _recovers_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            if self.connection is not None and self.connection.synchronized:
                self.connected = True
                await self._set_state("connected", None)
                return True
        return False

    async def _set_state(self, state: str, error: str | None) -> None:
        """Record and announce a state; a stop requested meanwhile is honoured right after."""
        await self._shared.set_state(self.account, state, error)
        honour_cancellation()

    def synchronization_started(self, instance: str) -> None:
        self._shared.syncs.start(self.account.id, instance)

    def synchronization_finished(self, instance: str) -> None:
        self._shared.syncs.finish(self.account.id, instance)

    async def _close(self) -> None:
        """Close the SDK connection (it unsubscribes); finished even when cancelled meanwhile.

        The lease is released only after this returns, so an interrupted unsubscribe would let
        the next owner subscribe while this one still is: hence the shield.
        """
        connection, self.connection = self.connection, None
        self.connected = False
        self._shared.syncs.finish(self.account.id)
        if connection is None:
            return
        closing = asyncio.ensure_future(asyncio.wait_for(connection.close(), timeout=10))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await closing
            raise
        except Exception as exc:  # noqa: BLE001 - counted; the lease is then left to expire
            self.close_failed = True
            metrics.ERRORS.labels("sdk").inc()
            log.warning("account %s: closing the connection failed: %s", self.account.id, exc)


def _refusal(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    code = details if isinstance(details, str) else None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        code = str(details[0].get("message") or details[0].get("code") or "")
    if code in REFUSALS:
        return REFUSALS[code]
    return f"MetaAPI refused the account: {exc}"


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None
