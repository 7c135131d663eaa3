"""The observable log: every subscription's start and end, and the questions tests ask of it.

"The most connections an account ever had open at once" and "subscriptions per socket" are
answered from an ordered event list (a sequence number, not the clock, orders events, so a
resubscribe in the same millisecond is never counted as overlap).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from algoedge.metaapi_sim.broker import iso


@dataclass(slots=True)
class Subscription:
    """One account subscription held by one socket for one instance index."""

    account_id: str
    instance_index: int
    socket_id: str
    client_id: str | None
    started: datetime
    started_seq: int
    ended: datetime | None = None
    ended_seq: int | None = None
    end_reason: str | None = None
    #: Subscribe requests for the same (socket, account, instance) while it was already held.
    resubscribes: int = 0
    #: Full synchronizations (through dealSynchronizationFinished) sent on this subscription.
    synchronizations: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "instanceIndex": self.instance_index,
            "socketId": self.socket_id,
            "clientId": self.client_id,
            "started": iso(self.started),
            "ended": iso(self.ended) if self.ended else None,
            "endReason": self.end_reason,
            "resubscribes": self.resubscribes,
            "synchronizations": self.synchronizations,
        }


def _peak(spans: list[tuple[int, int | None]]) -> int:
    """The most spans open at once; an end at sequence n closes before a start at n+1 opens."""
    events = sorted(
        itertools.chain.from_iterable(
            ((start, 1), (end, -1)) if end is not None else ((start, 1),) for start, end in spans
        )
    )
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


@dataclass(slots=True)
class SubscriptionLog:
    """Every subscription of the run, open and closed."""

    records: list[Subscription] = field(default_factory=list)
    _open: dict[tuple[str, str, int], Subscription] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def start(
        self,
        *,
        account_id: str,
        instance_index: int,
        socket_id: str,
        client_id: str | None,
        now: datetime,
    ) -> tuple[Subscription, bool]:
        """Record a subscribe; returns the subscription and whether it is new."""
        key = (socket_id, account_id, instance_index)
        held = self._open.get(key)
        if held is not None:
            held.resubscribes += 1
            return held, False
        record = Subscription(
            account_id, instance_index, socket_id, client_id, now, next(self._seq)
        )
        self.records.append(record)
        self._open[key] = record
        return record, True

    def end(
        self, *, socket_id: str, account_id: str, instance_index: int, reason: str, now: datetime
    ) -> bool:
        record = self._open.pop((socket_id, account_id, instance_index), None)
        if record is None:
            return False
        record.ended, record.ended_seq, record.end_reason = now, next(self._seq), reason
        return True

    def held(self, *, socket_id: str, account_id: str, instance_index: int) -> Subscription | None:
        return self._open.get((socket_id, account_id, instance_index))

    def open_for_socket(self, socket_id: str) -> list[Subscription]:
        return [r for (sid, _, _), r in self._open.items() if sid == socket_id]

    def open_for_account(self, account_id: str) -> list[Subscription]:
        return [r for (_, aid, _), r in self._open.items() if aid == account_id]

    def max_open(self, account_id: str) -> dict[str, Any]:
        """The most subscriptions the account had at once: overall, per instance index, and clients."""
        mine = [r for r in self.records if r.account_id == account_id]
        per_instance = {
            str(index): _peak(
                [(r.started_seq, r.ended_seq) for r in mine if r.instance_index == index]
            )
            for index in sorted({r.instance_index for r in mine})
        }
        # Spans of each client id: from its first subscription's start to its last one's end.
        by_client: dict[str | None, list[Subscription]] = {}
        for r in mine:
            by_client.setdefault(r.client_id, []).append(r)
        client_spans = [
            (
                min(r.started_seq for r in held),
                None
                if any(r.ended_seq is None for r in held)
                else max(r.ended_seq for r in held if r.ended_seq is not None),
            )
            for held in by_client.values()
        ]
        return {
            "accountId": account_id,
            "subscriptions": _peak([(r.started_seq, r.ended_seq) for r in mine]),
            "perInstanceIndex": per_instance,
            "clients": _peak(client_spans),
        }

    def per_socket(self) -> list[dict[str, Any]]:
        """For every socket that ever subscribed: its client id, open accounts now and the peak."""
        sockets: dict[str, list[Subscription]] = {}
        for r in self.records:
            sockets.setdefault(r.socket_id, []).append(r)
        return [
            {
                "socketId": sid,
                "clientId": held[0].client_id,
                "instanceIndexes": sorted({r.instance_index for r in held}),
                "open": sum(1 for r in held if r.ended_seq is None),
                "maxOpen": _peak([(r.started_seq, r.ended_seq) for r in held]),
                "total": len(held),
            }
            for sid, held in sockets.items()
        ]
