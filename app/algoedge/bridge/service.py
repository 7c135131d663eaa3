"""The bridge process: membership, leases, the owned accounts' runners, trades and events, probes.

Loops of one asyncio process (``Bridge.run``):
- heartbeat (every third of the lease TTL): register as a member, renew held leases, close what
  was lost, fence everything if renewals stopped succeeding in time;
- reconcile (each second, or at once when the API publishes a wake): owned = rendezvous owner
  among live members; release what is no longer owned (close, then release), acquire what is;
- removals: undeploy and delete MetaAPI accounts the users unlinked or replaced;
- trades: deals become trade rows (idempotent) and ``trade.opened`` / ``trade.closed`` events;
  account updates are coalesced to at most one ``account.update`` per account per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from algoedge import credentials
from algoedge.bridge import metrics
from algoedge.bridge.connection import (
    REFUSALS,
    AccountRunner,
    ConnectQueue,
    Refused,
    Shared,
    Superseded,
    SyncTracker,
)
from algoedge.bridge.deals import Closed, Opened, read_deal
from algoedge.bridge.leases import Leases, Taken
from algoedge.bridge.ownership import assign, owner_of
from algoedge.cancellation import stop_tasks
from algoedge.config import BridgeSettings
from algoedge.db import Database
from algoedge.db import bridge as store
from algoedge.db.accounts import ACCOUNT_STATUS_EVENT, account_status, read_encrypted_password
from algoedge.events import publish_event
from algoedge.jsonable import to_jsonable
from algoedge.keys import BRIDGE_WAKE_CHANNEL

log = logging.getLogger("algoedge.bridge")

#: Seconds a Redis command may take before the bridge treats Redis as unreachable.
REDIS_TIMEOUT = 2.0
#: ``last_error`` of accounts closed because this replica lost Redis (their owner is unknown).
FENCED = "the bridge lost its coordination store; reconnecting when it is back"
#: Account updates (equity, positions) reach sockets at most this often per account.
UPDATE_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Timing:
    """The lease arithmetic (docs/bridge.md states it with the default TTL)."""

    ttl: float

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def fence_after(self) -> float:
        """Unrenewed this long, a replica closes its connections: one renewal before expiry."""
        return self.ttl - self.renew_every

    @property
    def cold_wait(self) -> float:
        """A lease found absent is used only after a previous holder's next renewal must have
        run (and found the lease gone, and closed)."""
        return self.renew_every + REDIS_TIMEOUT + 1.0


class Bridge:
    def __init__(self, settings: BridgeSettings, *, db: Database, redis: Redis, api: Any) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self.api = api
        self.member = settings.bridge_pod_name
        self.timing = Timing(settings.bridge_lease_ttl)
        self.leases = Leases(
            redis, member=self.member, incarnation=secrets.token_hex(4), ttl=self.timing.ttl
        )
        self.cipher = credentials.CredentialsCipher(settings.credentials_key.get_secret_value())
        self.members: list[str] = []
        self.runners: dict[int, tuple[AccountRunner, asyncio.Task[None]]] = {}
        self.accounts: dict[int, store.LinkedAccount] = {}
        self.states: dict[int, str] = {}
        #: Accounts refused at this credentials version: not connected until the user edits them.
        self.refused: dict[int, int] = {}
        self.last_renewed = 0.0
        self.stopping = False
        self._wake = asyncio.Event()
        self._accounts_read = 0.0
        self._deals: asyncio.Queue[tuple[store.LinkedAccount, dict[str, Any], float]] = (
            asyncio.Queue()
        )
        self._changed: dict[int, tuple[store.LinkedAccount, Any]] = {}
        self.syncs = SyncTracker()
        self._owners_key: tuple[tuple[int, ...], tuple[str, ...]] = ((), ())
        self._owners_cache: dict[int, str] = {}
        self.shared = Shared(
            api=api,
            queue=ConnectQueue(settings.bridge_max_concurrent_syncs),
            syncs=self.syncs,
            set_state=self.set_state,
            provision=self.provision,
            on_deal=self._on_deal,
            on_change=self._on_change,
        )

    # --- health -------------------------------------------------------------------------
    def ready(self) -> bool:
        fresh = time.monotonic() - self.last_renewed < self.timing.fence_after
        return not self.stopping and self.member in self.members and fresh

    # --- the process --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        loops = [
            self._heartbeat_loop(),
            self._reconcile_loop(),
            self._wake_loop(),
            self._record_loop(),
            self._update_loop(),
            self._removal_loop(),
            self._summary_loop(),
        ]
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stopping = True
            # A loop may be closing released accounts (each close up to 10 s): patience first.
            await stop_tasks(tasks, within=60, patience=15)
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Leave the membership, close every connection, release every lease."""
        with contextlib.suppress(RedisError, OSError):
            await self.leases.heartbeat(present=False)
        held = list(self.runners)
        closed = await self._stop_runners(held)
        try:
            await self.leases.release(closed)
            await self.leases.report_connected((), held)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not release %d leases (%s); they expire in %.0fs",
                len(held),
                exc,
                self.timing.ttl,
            )
        await self._drain_deals()
        log.info("bridge %s stopped: %d accounts released", self.member, len(held))

    # --- membership and leases ------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                members = await self.leases.heartbeat()
                lost = await self.leases.renew(list(self.runners))
            except (RedisError, OSError) as exc:
                metrics.ERRORS.labels("redis").inc()
                log.warning("Redis unreachable for the heartbeat (%s)", exc)
                if time.monotonic() - self.last_renewed > self.timing.fence_after:
                    await self._fence()
            else:
                self.last_renewed = started
                if members != self.members:
                    log.info("bridge members: %s", ", ".join(members) or "none")
                    self.members = members
                    self._wake.set()
                metrics.MEMBERS.set(len(members))
                if lost:
                    log.warning("%d leases were taken by another holder: closing them", len(lost))
                    metrics.LEASE_LOSSES.labels("taken").inc(len(lost))
                    await self._stop_runners(sorted(lost))
                await self._report_connected()
            await asyncio.sleep(max(0.0, self.timing.renew_every - (time.monotonic() - started)))

    async def _fence(self) -> None:
        """Close every connection before the unrenewed leases can expire and be taken, and tell
        the users: their accounts are not connected while this replica cannot reach Redis."""
        if not self.runners:
            return
        log.warning(
            "leases not renewed for %.0fs: closing %d connections before they expire",
            time.monotonic() - self.last_renewed,
            len(self.runners),
        )
        metrics.LEASE_LOSSES.labels("fenced").inc(len(self.runners))
        accounts = [runner.account for runner, _ in self.runners.values()]
        await self._stop_runners([a.id for a in accounts])
        # After the close, so the state is true when written; well before another replica may
        # connect (lease expiry + cold wait).
        for account in accounts:
            await self.set_state(account, "disconnected", FENCED)

    async def _report_connected(self) -> None:
        connected = [a for a, (r, _) in self.runners.items() if r.connected]
        gone = [
            a for a in self.accounts if a not in self.runners or not self.runners[a][0].connected
        ]
        await self.leases.report_connected(connected, gone)

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            woken = self._wake.is_set()
            self._wake.clear()
            try:
                await self.reconcile(refresh=woken)
            except (RedisError, OSError) as exc:
                metrics.ERRORS.labels("redis").inc()
                log.warning("reconcile: Redis unreachable (%s)", exc)
            except Exception:
                metrics.ERRORS.labels("database").inc()
                log.exception("reconcile failed; retrying")

    async def reconcile(self, *, refresh: bool) -> None:
        now = time.monotonic()
        if refresh or now - self._accounts_read > self.settings.bridge_poll_seconds:
            self.accounts = {a.id: a for a in await store.linked_accounts(self.db)}
            self._accounts_read = now
        fresh = now - self.last_renewed < self.timing.fence_after
        if not fresh and not self.stopping:
            # Whichever of this loop and the heartbeat sees it first fences (same outcome).
            await self._fence()
        member = self.member in self.members and fresh and not self.stopping
        # Only what every replica reads alike (the table), so all compute the same owners.
        candidates = [a.id for a in self.accounts.values() if a.state != "failed"]
        owners = self._owners(candidates) if member else {}
        wanted = {
            a
            for a, owner in owners.items()
            if owner == self.member and self.refused.get(a) != self.accounts[a].credentials_version
        }
        # Runners of an older credentials version restart with the new one (lease kept).
        stale = [
            a
            for a, (r, _) in self.runners.items()
            if a in self.accounts
            and r.account.credentials_version != self.accounts[a].credentials_version
        ]
        finished = [a for a, (_, t) in self.runners.items() if t.done()]
        release = sorted((set(self.runners) - wanted) | set(finished))
        if release or stale:
            closed = await self._stop_runners(sorted(set(release) | set(stale)))
            releasable = sorted(set(release) & set(closed))
            if releasable:
                await self.leases.release(releasable)
        missing = sorted(wanted - set(self.runners))
        if missing:
            taken = await self.leases.acquire(missing)
            for account_id, how in taken.items():
                self._start(self.accounts[account_id], cold=how is Taken.COLD)
        metrics.LEASES_HELD.set(len(self.runners))

    def _owners(self, candidates: list[int]) -> dict[int, str]:
        """Bounded-load rendezvous owners, recomputed only when accounts or members change."""
        key = (tuple(sorted(candidates)), tuple(sorted(self.members)))
        if key != self._owners_key:
            self._owners_key, self._owners_cache = key, assign(key[0], key[1])
        return self._owners_cache

    def _start(self, account: store.LinkedAccount, *, cold: bool) -> None:
        runner = AccountRunner(account, self.shared)
        delay = self.timing.cold_wait if cold else 0.0
        task = asyncio.create_task(runner.run(start_delay=delay), name=f"account-{account.id}")
        task.add_done_callback(functools.partial(self._finished, account, runner))
        self.runners[account.id] = (runner, task)

    def _finished(
        self, account: store.LinkedAccount, runner: AccountRunner, task: asyncio.Task[None]
    ) -> None:
        if runner.refused:
            self.refused[account.id] = account.credentials_version
        if not task.cancelled() and task.exception() is not None:
            log.error("account %s: runner failed", account.id, exc_info=task.exception())
        self._wake.set()

    async def _stop_runners(self, account_ids: list[int]) -> list[int]:
        """Stop (and close) these accounts' runners; returns those whose lease may be released."""
        stopped = []
        for account_id in account_ids:
            entry = self.runners.pop(account_id, None)
            if entry is not None:
                entry[1].cancel()
                stopped.append(entry)
        if stopped:
            await asyncio.gather(*(task for _, task in stopped), return_exceptions=True)
        self._count_states()
        unconfirmed = {r.account.id for r, _ in stopped if r.close_failed}
        if unconfirmed:
            log.warning(
                "%d connections did not confirm their close: leaving their leases to expire",
                len(unconfirmed),
            )
        return [a for a in account_ids if a not in unconfirmed]

    # --- state, provisioning, removal -----------------------------------------------------
    async def set_state(self, account: store.LinkedAccount, state: str, error: str | None) -> None:
        self.states[account.id] = state
        self._count_states()
        try:
            change = await store.set_state(
                self.db,
                account_id=account.id,
                version=account.credentials_version,
                state=state,
                error=error,
            )
        except Exception as exc:  # noqa: BLE001 - a state write must not stop a connection
            metrics.ERRORS.labels("database").inc()
            log.warning("account %s: could not record state %s (%s)", account.id, state, exc)
            return
        if change is None:
            return
        if state == "failed":
            log.warning("account %s: failed: %s", account.id, error)
        await self._publish(
            change.user_id, ACCOUNT_STATUS_EVENT, account_status(change.account_id, change)
        )

    def _count_states(self) -> None:
        counts = Counter(self.states[a] for a in self.runners if a in self.states)
        for state in metrics.STATES:
            metrics.ACCOUNTS.labels(state).set(counts.get(state, 0))

    async def provision(self, account: store.LinkedAccount) -> Any:
        """The MetaAPI account of these credentials, created (and stored) when there is none."""
        from metaapi_cloud_sdk.clients.error_handler import NotFoundException

        accounts_api = self.api.metatrader_account_api
        metaapi_id = account.metaapi_account_id
        if metaapi_id is None:
            current = self.accounts.get(account.id)
            metaapi_id = current.metaapi_account_id if current else None
        if metaapi_id is not None:
            try:
                return await accounts_api.get_account(metaapi_id)
            except NotFoundException:
                raise Refused(
                    "the MetaAPI account was deleted outside AlgoEdge; edit the account to provision it again"
                ) from None
        await self.set_state(account, "provisioning", None)
        password = self.cipher.decrypt(await read_encrypted_password(self.db, account.id))
        spec: dict[str, Any] = {
            "name": f"algoedge-{account.id}",
            "login": account.login,
            "password": password,
            "server": account.server,
            "platform": account.platform,
            "magic": 0,
            "type": "cloud-g2",
            "reliability": "regular",
        }
        if self.settings.metaapi_region:
            spec["region"] = self.settings.metaapi_region
        meta = await accounts_api.create_account(spec)
        stored = await store.store_metaapi_id(
            self.db,
            account_id=account.id,
            version=account.credentials_version,
            metaapi_account_id=meta.id,
        )
        if not stored:
            # Unlinked or edited meanwhile: this MetaAPI account belongs to nobody.
            await store.request_removal(self.db, meta.id)
            raise Superseded
        return meta

    async def _removal_loop(self) -> None:
        from metaapi_cloud_sdk.clients.error_handler import NotFoundException

        while True:
            await asyncio.sleep(self.settings.bridge_poll_seconds)
            if self.member not in self.members:
                continue
            try:
                pending = await store.pending_removals(self.db, limit=100)
            except Exception as exc:  # noqa: BLE001 - retried at the next poll
                metrics.ERRORS.labels("database").inc()
                log.warning("could not read MetaAPI removals (%s)", exc)
                continue
            for metaapi_id in pending:
                if owner_of(metaapi_id, self.members) != self.member:
                    continue
                try:
                    meta = await self.api.metatrader_account_api.get_account(metaapi_id)
                    if meta.state not in ("UNDEPLOYED", "CREATED"):
                        await meta.undeploy()
                        await meta.wait_undeployed(
                            timeout_in_seconds=120, interval_in_milliseconds=500
                        )
                    await meta.remove()
                except NotFoundException:
                    pass
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - kept, retried at the next poll
                    metrics.REMOVALS.labels("retry").inc()
                    await store.fail_removal(self.db, metaapi_id, str(exc))
                    continue
                await store.finish_removal(self.db, metaapi_id)
                metrics.REMOVALS.labels("removed").inc()
                log.info("MetaAPI account %s undeployed and removed", metaapi_id)

    # --- wake-ups from the API --------------------------------------------------------------
    async def _wake_loop(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(BRIDGE_WAKE_CHANNEL)
                    delay = 0.5
                    while True:
                        message = await pubsub.get_message(timeout=30.0)
                        if message is not None:
                            self._wake.set()
            except (RedisError, OSError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # --- trades and updates -----------------------------------------------------------------
    def _on_deal(self, account: store.LinkedAccount, deal: dict[str, Any]) -> None:
        self._deals.put_nowait((account, deal, time.monotonic()))

    def _on_change(self, account: store.LinkedAccount, connection: Any) -> None:
        self._changed[account.id] = (account, connection)

    async def _record_loop(self) -> None:
        while True:
            account, deal, arrived = await self._deals.get()
            await self._record(account, deal, arrived)

    async def _drain_deals(self) -> None:
        while not self._deals.empty():
            await self._record(*self._deals.get_nowait())

    async def _record(
        self, account: store.LinkedAccount, deal: dict[str, Any], arrived: float
    ) -> None:
        try:
            event = read_deal(deal)
        except (ValueError, KeyError) as exc:
            metrics.TRADES.labels("malformed").inc()
            log.warning("account %s: malformed deal %s (%s)", account.id, deal.get("id"), exc)
            return
        if event is None:
            return
        for attempt in range(5):
            try:
                if isinstance(event, Opened):
                    trade = await store.record_open(
                        self.db,
                        account_id=account.id,
                        position_id=event.position_id,
                        symbol=event.symbol,
                        side=event.side,
                        volume=event.volume,
                        price=event.price,
                        opened_at=event.at,
                    )
                    name, outcome = "trade.opened", "opened"
                else:
                    assert isinstance(event, Closed)
                    trade = await store.record_close(
                        self.db,
                        account_id=account.id,
                        position_id=event.position_id,
                        price=event.price,
                        profit=event.profit,
                        closed_at=event.at,
                    )
                    name, outcome = "trade.closed", "closed"
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried; a deal is never dropped silently
                metrics.ERRORS.labels("database").inc()
                log.warning(
                    "account %s: recording deal %s failed (%s)", account.id, deal.get("id"), exc
                )
                await asyncio.sleep(0.5 * 2**attempt)
        else:
            log.error(
                "account %s: deal %s not recorded; the next synchronization brings it again",
                account.id,
                deal.get("id"),
            )
            return
        if trade is None:
            metrics.TRADES.labels(
                "duplicate" if isinstance(event, Opened) else "unmatched_or_duplicate"
            ).inc()
            return
        metrics.TRADES.labels(outcome).inc()
        await self._publish(trade.user_id, name, to_jsonable(trade))
        metrics.PUBLISH_LAG.observe(time.monotonic() - arrived)

    async def _update_loop(self) -> None:
        while True:
            await asyncio.sleep(UPDATE_INTERVAL)
            changed, self._changed = self._changed, {}
            for account, connection in changed.values():
                if connection is None:
                    continue
                await self._publish(
                    account.user_id, "account.update", update_event(account.id, connection)
                )

    async def _publish(self, user_id: int, event: str, data: Any) -> None:
        try:
            await publish_event(self.redis, user_id, event, data)
        except (RedisError, OSError) as exc:
            metrics.ERRORS.labels("redis").inc()
            log.debug("could not publish %s (%s)", event, exc)

    async def _summary_loop(self) -> None:
        last = None
        while True:
            await asyncio.sleep(10)
            counts = Counter(self.states.get(a, "pending") for a in self.runners)
            summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
            line = f"bridge {self.member}: {len(self.runners)} accounts held ({summary})"
            if line != last:
                log.info("%s", line)
                last = line


def update_event(account_id: int, connection: Any) -> dict[str, Any]:
    """``account.update``: equity and open positions from the SDK's terminal state."""
    terminal = connection.terminal_state
    info = terminal.account_information or {}
    return {
        "id": account_id,
        "balance": info.get("balance"),
        "equity": info.get("equity"),
        "margin": info.get("margin"),
        "free_margin": info.get("freeMargin"),
        "open_positions": len(terminal.positions or []),
    }


__all__ = ["REFUSALS", "Bridge", "Timing", "update_event"]
