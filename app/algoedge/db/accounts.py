"""Linked MetaTrader accounts: a user's own, never anyone else's.

Also the shape of an account's connection state as users see it (``connection`` in the API,
the ``account.status`` socket event), kept here so the API and the bridge build it alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import psycopg2.errors

from algoedge.db import Database
from algoedge.db.errors import Conflict, LimitReached, NotFound

#: What the bridge has achieved for an account (``mt_accounts.state``): waiting for a bridge,
#: creating and deploying its MetaAPI account, connecting to the broker, loading its history,
#: streaming; lost the broker for now (the bridge retries); or refused for good (bad credentials,
#: unknown server) until the user edits the account.
ConnectionState = Literal[
    "pending",
    "provisioning",
    "connecting",
    "synchronizing",
    "connected",
    "disconnected",
    "failed",
]

#: The socket event that tells a user's clients an account's connection changed (emitted by the
#: API when an edit resets it, by the bridge on every change it records).
ACCOUNT_STATUS_EVENT = "account.status"


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class AccountConnection:
    """An account's connection to its broker (through MetaAPI): where it stands and since when."""

    state: ConnectionState
    #: When the account entered ``state``.
    since: datetime
    #: Why the account is ``failed`` or ``disconnected`` (at most 500 characters), else None.
    last_error: str | None


@dataclass(frozen=True)  # no slots: rendered by the API (see algoedge.db)
class MtAccount:
    id: int
    user_id: int
    login: str
    server: str
    platform: str
    connection: AccountConnection
    created_at: datetime


class ConnectionRecord(Protocol):
    """Any record of a connection state: :class:`AccountConnection`, the bridge's ``StateChange``."""

    @property
    def state(self) -> str: ...

    @property
    def since(self) -> datetime: ...

    @property
    def last_error(self) -> str | None: ...


def account_status(account_id: int, connection: ConnectionRecord) -> dict[str, Any]:
    """The data of :data:`ACCOUNT_STATUS_EVENT`: ``{id, state, since, last_error}``, JSON-ready;
    the same fields as an account's ``connection`` in the API."""
    return {
        "id": account_id,
        "state": connection.state,
        "since": connection.since.isoformat(),
        "last_error": connection.last_error,
    }


_COLUMNS = "id, user_id, login, server, platform, state, state_since, last_error, created_at"


def _account(row: Any) -> MtAccount:
    id_, user_id, login, server, platform, state, since, last_error, created_at = row
    return MtAccount(
        id=id_,
        user_id=user_id,
        login=login,
        server=server,
        platform=platform,
        connection=AccountConnection(state=state, since=since, last_error=last_error),
        created_at=created_at,
    )


async def link_account(
    db: Database,
    *,
    user_id: int,
    login: str,
    server: str,
    platform: str,
    encrypted_password: bytes,
    limit: int | None = None,
) -> MtAccount:
    """Link one more account, unless the user already has ``limit`` (LimitReached; None: no
    limit, for seeding tools). The user's row is locked for the count and the insert, so
    concurrent links cannot both pass it."""
    try:
        async with db.transaction() as cur:
            await cur.execute("SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE", (user_id,))
            await cur.execute("SELECT count(*) FROM mt_accounts WHERE user_id = %s", (user_id,))
            ((linked,),) = await cur.fetchall()
            if limit is not None and linked >= limit:
                raise LimitReached(
                    f"you have {linked} linked accounts and at most {limit} are allowed; "
                    "unlink one to link another"
                )
            await cur.execute(
                "INSERT INTO mt_accounts (user_id, login, server, platform, encrypted_password) "
                f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (user_id, login, server, platform, encrypted_password),
            )
            return _account(await cur.fetchone())
    except psycopg2.errors.UniqueViolation:
        raise Conflict(f"account {login} on {server} is already linked") from None


async def list_accounts(
    db: Database, *, user_id: int, after_id: int | None, limit: int
) -> list[MtAccount]:
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM mt_accounts WHERE user_id = %s AND id > %s "
            "ORDER BY id LIMIT %s",
            (user_id, after_id or 0, limit),
        )
        return [_account(row) for row in await cur.fetchall()]


async def get_account(db: Database, *, user_id: int, account_id: int) -> MtAccount:
    async with db.cursor() as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM mt_accounts WHERE id = %s AND user_id = %s",
            (account_id, user_id),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"account {account_id}")
    return _account(row)


# Queues a MetaAPI account for the bridge to undeploy and delete; a second request is a no-op.
_REQUEST_REMOVAL = (
    "INSERT INTO metaapi_removals (metaapi_account_id) VALUES (%s) ON CONFLICT DO NOTHING"
)


async def edit_credentials(
    db: Database,
    *,
    user_id: int,
    account_id: int,
    server: str | None,
    encrypted_password: bytes | None,
) -> MtAccount:
    """New credentials (None keeps a field): the account starts over at ``pending``.

    One transaction: the MetaAPI account made for the old credentials is queued for removal and
    forgotten, and ``credentials_version`` moves on, so a bridge still working with the old
    credentials can neither record a state nor store a MetaAPI id for this account (its writes
    name the version they started from). The row lock orders this against such a write.
    """
    async with db.transaction() as cur:
        await cur.execute(
            "SELECT login, metaapi_account_id FROM mt_accounts WHERE id = %s AND user_id = %s "
            "FOR UPDATE",
            (account_id, user_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"account {account_id}")
        login, metaapi_account_id = row
        if metaapi_account_id is not None:
            await cur.execute(_REQUEST_REMOVAL, (metaapi_account_id,))
        try:
            await cur.execute(
                "UPDATE mt_accounts SET server = COALESCE(%s, server), "
                "encrypted_password = COALESCE(%s, encrypted_password), "
                "credentials_version = credentials_version + 1, metaapi_account_id = NULL, "
                "state = 'pending', state_since = now(), last_error = NULL, updated_at = now() "
                f"WHERE id = %s RETURNING {_COLUMNS}",
                (server, encrypted_password, account_id),
            )
        except psycopg2.errors.UniqueViolation:
            # Raised inside the block, so the transaction (and the queued removal) rolls back.
            raise Conflict(f"account {login} on {server} is already linked") from None
        return _account(await cur.fetchone())


async def unlink_account(db: Database, *, user_id: int, account_id: int) -> None:
    """Delete the account (its trades go with it) and queue its MetaAPI account for removal."""
    async with db.transaction() as cur:
        await cur.execute(
            "DELETE FROM mt_accounts WHERE id = %s AND user_id = %s RETURNING metaapi_account_id",
            (account_id, user_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"account {account_id}")
        if row[0] is not None:
            await cur.execute(_REQUEST_REMOVAL, (row[0],))


async def count_linked_accounts(db: Database) -> int:
    """Every linked account of every user: the demand the bridge must serve (the replica: the
    operator's scaler reads it every 30 s, so seconds of lag change nothing)."""
    ((count,),) = await db.read_replica("SELECT count(*) FROM mt_accounts")
    return int(count)


async def read_encrypted_password(db: Database, account_id: int) -> bytes:
    """For the bridge only: the account's encrypted trading password."""
    async with db.cursor() as cur:
        await cur.execute("SELECT encrypted_password FROM mt_accounts WHERE id = %s", (account_id,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"account {account_id}")
    return bytes(row[0])
