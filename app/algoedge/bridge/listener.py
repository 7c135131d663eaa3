"""The SDK's synchronization events for one account, turned into the runner's and the process's signals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metaapi_cloud_sdk.clients.metaapi.synchronization_listener import SynchronizationListener

if TYPE_CHECKING:
    from algoedge.bridge.connection import AccountRunner, Shared


class AccountListener(SynchronizationListener):  # type: ignore[misc]
    """Every callback marks a packet; deals and state changes go on to the process."""

    def __init__(self, runner: AccountRunner, shared: Shared) -> None:
        self._runner = runner
        self._shared = shared

    async def on_connected(self, instance_index: str, replicas: int) -> None:
        self._runner.packet("authenticated")

    async def on_disconnected(self, instance_index: str) -> None:
        self._runner.packet("disconnected")
        self._runner.synchronization_finished(instance_index)
        self._runner.disconnected()

    async def on_stream_closed(self, instance_index: str) -> None:
        self._runner.synchronization_finished(instance_index)

    async def on_broker_connection_status_changed(
        self, instance_index: str, connected: bool
    ) -> None:
        self._runner.packet("status")

    async def on_synchronization_started(
        self, instance_index: str, *args: Any, **kwargs: Any
    ) -> None:
        self._runner.packet("synchronization")
        self._runner.synchronization_started(instance_index)

    async def on_deals_synchronized(self, instance_index: str, synchronization_id: str) -> None:
        self._runner.packet("synchronization")
        self._runner.synchronization_finished(instance_index)

    async def on_deal_added(self, instance_index: str, deal: Any) -> None:
        self._runner.packet("deal")
        self._shared.on_deal(self._runner.account, dict(deal))

    async def on_account_information_updated(self, instance_index: str, *args: Any) -> None:
        self._runner.packet("update")
        self._shared.on_change(self._runner.account, self._runner.connection)

    async def on_positions_updated(self, instance_index: str, *args: Any) -> None:
        self._runner.packet("update")
        self._shared.on_change(self._runner.account, self._runner.connection)

    async def on_symbol_prices_updated(
        self, instance_index: str, *args: Any, **kwargs: Any
    ) -> None:
        self._runner.packet("prices")
        self._shared.on_change(self._runner.account, self._runner.connection)
