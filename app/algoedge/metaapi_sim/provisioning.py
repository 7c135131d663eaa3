"""The provisioning service: create, deploy, undeploy and delete accounts, with MetaAPI's state transitions."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from algoedge.metaapi_sim.accounts import NewAccount, ProvisionedAccount, validation_details
from algoedge.metaapi_sim.broker import BrokerAccount
from algoedge.metaapi_sim.errors import error_body
from algoedge.metaapi_sim.faults import REFUSAL_MESSAGES, Faults
from algoedge.metaapi_sim.settings import SimSettings
from algoedge.metaapi_sim.streaming import Streaming

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request MetaAPI would refuse: the HTTP status and MetaAPI's error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status, self.body = status, body


def not_found(account_id: str) -> ApiError:
    return ApiError(404, error_body("NotFoundError", f"Account with id {account_id} not found"))


class Provisioning:
    """Accounts and their lifecycle; state changes happen after the configured delays, in tasks."""

    def __init__(
        self,
        *,
        settings: SimSettings,
        accounts: dict[str, ProvisionedAccount],
        streaming: Streaming,
        faults: Faults,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.streaming = streaming
        self.faults = faults
        self.clock = clock
        self._ids = random.Random(settings.seed)  # noqa: S311 - repeatable ids
        self._by_transaction: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("account transition failed", exc_info=task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, account_id: str) -> ProvisionedAccount:
        account = self.accounts.get(account_id)
        if account is None:
            raise not_found(account_id)
        return account

    def _refuse(self, account_id: str, server: str) -> None:
        refusal = self.faults.refusal(account_id=account_id, server=server)
        if refusal is not None:
            raise ApiError(
                400, error_body("ValidationError", REFUSAL_MESSAGES[refusal], details=refusal)
            )

    def create(self, body: Any, transaction_id: str | None) -> ProvisionedAccount:
        """Validate and store a new account (CREATED); a repeated transaction-id returns the same one."""
        if transaction_id and transaction_id in self._by_transaction:
            return self.get(self._by_transaction[transaction_id])
        if not isinstance(body, dict):
            raise ApiError(
                400,
                error_body(
                    "ValidationError",
                    "Validation failed",
                    details=[{"parameter": "body", "message": "must be a JSON object"}],
                ),
            )
        try:
            spec = NewAccount.model_validate(body)
        except ValidationError as exc:
            raise ApiError(
                400,
                error_body("ValidationError", "Validation failed", details=validation_details(exc)),
            ) from None
        account_id = f"{self._ids.getrandbits(128):032x}"
        self._refuse(account_id, spec.server)
        broker = BrokerAccount.opened(
            login=spec.login,
            server=spec.server,
            name=spec.name,
            balance=self.settings.initial_balance,
            now=self.clock(),
        )
        account = ProvisionedAccount(account_id, spec, broker)
        self.accounts[account_id] = account
        if transaction_id:
            self._by_transaction[transaction_id] = account_id
        return account

    def deploy(self, account_id: str) -> None:
        account = self.get(account_id)
        self._refuse(account_id, account.spec.server)
        if account.state in ("DEPLOYING", "DEPLOYED"):
            return
        if account.state in ("UNDEPLOYING", "DELETING"):
            raise ApiError(
                409,
                error_body(
                    "ConflictError", f"Account {account_id} is {account.state}; retry later"
                ),
            )
        account.state = "DEPLOYING"
        self._later(self._finish_deploy(account))

    async def _finish_deploy(self, account: ProvisionedAccount) -> None:
        await asyncio.sleep(self.settings.deploy_seconds)
        if account.state != "DEPLOYING":
            return
        account.state, account.connection_status = "DEPLOYED", "DISCONNECTED"
        await asyncio.sleep(self.settings.connect_seconds)
        if account.state != "DEPLOYED":
            return
        refused = self.faults.refusal(account_id=account.id, server=account.spec.server)
        account.connection_status = "DISCONNECTED_FROM_BROKER" if refused else "CONNECTED"

    def undeploy(self, account_id: str) -> None:
        account = self.get(account_id)
        if account.state in ("UNDEPLOYING", "UNDEPLOYED", "CREATED"):
            return
        if account.state == "DELETING":
            raise ApiError(
                409, error_body("ConflictError", f"Account {account_id} is being deleted")
            )
        account.state, account.connection_status = "UNDEPLOYING", "DISCONNECTED"
        self._later(self._finish_undeploy(account))

    async def _finish_undeploy(self, account: ProvisionedAccount) -> None:
        await self.streaming.end_account(account, "undeployed")
        await asyncio.sleep(self.settings.deploy_seconds)
        if account.state == "UNDEPLOYING":
            account.state = "UNDEPLOYED"

    def delete(self, account_id: str) -> None:
        account = self.get(account_id)
        if account.state == "DELETING":
            return
        account.state, account.connection_status = "DELETING", "DISCONNECTED"
        self._later(self._finish_delete(account))

    async def _finish_delete(self, account: ProvisionedAccount) -> None:
        await self.streaming.end_account(account, "deleted")
        await asyncio.sleep(self.settings.deploy_seconds)
        self.accounts.pop(account.id, None)

    async def refuse(self, account_id: str, refusal: str) -> None:
        """Apply a credentials refusal injected by the admin: the terminal loses the broker."""
        account = self.get(account_id)
        if account.state == "DEPLOYED":
            account.connection_status = "DISCONNECTED_FROM_BROKER"
        await self.streaming.end_account(account, f"refused: {refusal}")

    def restore(self, account_id: str) -> None:
        account = self.accounts.get(account_id)
        if account is not None and account.state == "DEPLOYED":
            account.connection_status = "CONNECTED"
