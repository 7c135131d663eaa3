"""The tenant's worker and bridge on the real node, against services outside the tenant that run
in pods too: the worker sends a real e-mail to a mail catcher, the bridge connects a linked
account through the MetaAPI simulator.

The API is driven from the test process through the API Service's ClusterIP (kube-proxy serves
ClusterIPs to the host as to pods); what is under test is the worker, beat and bridge pods.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import secrets
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
import socketio

from devtools.controlplane import realnode
from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.support import wait_until
from tests.e2e.realnode.conftest import OutsideServices, RealTenant, wait_tenant_ready
from tests.e2e.realnode.test_tenant import pods

#: The lines aiosmtpd's Debugging handler prints around each message it accepted.
MESSAGE_BEGINS = "---------- MESSAGE FOLLOWS ----------"
MESSAGE_ENDS = "------------ END MESSAGE ------------"
PASSWORD = "correct horse battery"


def sink_messages(log: str) -> list[EmailMessage]:
    """Every message in the mail catcher's log. Each is printed as received (headers, then
    ``X-Peer``, a blank line and the body), after ``mail options: ...`` and a blank line when
    the client gave options (``BODY=8BITMIME``)."""
    messages = []
    for chunk in log.split(MESSAGE_BEGINS + "\n")[1:]:
        text = chunk.partition(MESSAGE_ENDS)[0]
        if text.startswith(("mail options:", "rcpt options:")):
            text = text.partition("\n\n")[2]
        message = email.message_from_string(text, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def recipients(message: EmailMessage) -> set[str]:
    return {address.addr_spec for address in message["To"].addresses}


def api_base(k8s: KubeCluster, tenant: RealTenant) -> str:
    spec = k8s.core.read_namespaced_service(f"{tenant.name}-api", tenant.namespace).spec
    assert spec is not None
    return f"http://{spec.cluster_ip}:8080"


def wait_running_and_ready(k8s: KubeCluster, namespace: str, *components: str) -> list[Any]:
    """The pods of ``components`` once each component has one and all are Running and Ready."""

    def probe() -> list[Any] | None:
        found = [p for c in components for p in pods(k8s, namespace, c)]
        if {p.metadata.labels["app.kubernetes.io/component"] for p in found} != set(components):
            return None
        for pod in found:
            statuses = pod.status.container_statuses or []
            if pod.status.phase != "Running" or not statuses or not all(s.ready for s in statuses):
                return None
        return found

    ready = wait_until(f"{', '.join(components)} pods Running and Ready", probe, timeout=180)
    for pod in ready:
        assert pod.spec.node_name == realnode.NODE_NAME, pod.metadata.name
    return ready


async def register(http: aiohttp.ClientSession, base: str, address: str) -> None:
    body = {"email": address, "password": PASSWORD, "name": "Trader"}
    async with http.post(f"{base}/api/v1/auth/register", json=body) as response:
        assert response.status == 202, (response.status, await response.text())


@pytest.mark.timeout(600)
def test_a_worker_pod_mails_the_welcome_to_the_mail_catcher_pod(
    real_node: KubeCluster, tenant: RealTenant, outside_services: OutsideServices
) -> None:
    wait_tenant_ready(real_node, tenant)
    wait_running_and_ready(real_node, tenant.namespace, "worker", "beat")
    address = f"{secrets.token_hex(4)}@example.com"

    async def sign_up() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await register(http, api_base(real_node, tenant), address)

    asyncio.run(sign_up())

    # The API only recorded the delivery and enqueued it; a worker pod sends it through the
    # sink's Service (smtp://smtp-sink.<namespace>.svc.cluster.local:1025, the tenant's Secret).
    def delivered() -> list[EmailMessage] | None:
        log = real_node.core.read_namespaced_pod_log(
            outside_services.smtp_sink_pod, outside_services.namespace
        )
        return [m for m in sink_messages(log) if address in recipients(m)] or None

    (welcome,) = wait_until(f"the mail catcher to receive mail for {address}", delivered)
    assert welcome["Subject"] == "Welcome to AlgoEdge"
    assert welcome.get_content_type() == "multipart/alternative"
    text = welcome.get_body(("plain",))
    assert text is not None
    assert "Hello Trader" in text.get_content()


async def link_and_follow(base: str, *, connect_within: float) -> tuple[list[str], dict[str, Any]]:
    """Sign up, open a socket, link an MT5 account and follow its ``account.status`` events until
    it is connected; the states seen and the account as the API then shows it."""
    address = f"{secrets.token_hex(4)}@example.com"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await register(http, base, address)
        credentials = {"email": address, "password": PASSWORD}
        async with http.post(f"{base}/api/v1/auth/login", json=credentials) as response:
            assert response.status == 200, (response.status, await response.text())
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        events: list[dict[str, Any]] = []
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_status(data: dict[str, Any]) -> None:
            events.append(data)
            if connected.done():
                return
            if data["state"] == "connected":
                connected.set_result(None)
            elif data["state"] == "failed":
                connected.set_exception(AssertionError(f"the account failed: {data}"))

        sio = socketio.AsyncClient(reconnection=False)
        sio.on("account.status", on_status)
        await sio.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)
        try:
            account = {"login": "7001", "server": "Sim-Demo", "password": "mt5-password"}
            async with http.post(
                f"{base}/api/v1/accounts", json=account, headers=headers
            ) as response:
                assert response.status == 201, (response.status, await response.text())
                account_id = (await response.json())["id"]
            try:
                await asyncio.wait_for(connected, connect_within)
            except TimeoutError:
                raise AssertionError(
                    f"not connected after {connect_within:.0f} s: {events}"
                ) from None
        finally:
            await sio.disconnect()
        async with http.get(f"{base}/api/v1/accounts/{account_id}", headers=headers) as response:
            assert response.status == 200, (response.status, await response.text())
            shown = await response.json()
    return [e["state"] for e in events if e["id"] == account_id], shown


@pytest.mark.timeout(600)
def test_the_bridge_pod_connects_a_linked_account_through_the_simulator_pod(
    real_node: KubeCluster, tenant: RealTenant, outside_services: OutsideServices
) -> None:
    wait_tenant_ready(real_node, tenant)
    (bridge,) = wait_running_and_ready(real_node, tenant.namespace, "bridge")
    wait_running_and_ready(real_node, outside_services.namespace, "metaapi-sim")
    # The bridge pod is aimed at the simulator's Service by the tenant (spec.bridge.metaapi.url).
    env = {e.name: e.value for e in bridge.spec.containers[0].env}
    assert env["ALGOEDGE_METAAPI_URL"] == outside_services.metaapi_url

    states, account = asyncio.run(link_and_follow(api_base(real_node, tenant), connect_within=120))
    # The bridge provisioned the account at the simulator (create, deploy), connected its
    # streaming socket and synchronized it; the API shows what the bridge recorded.
    assert states[-1] == "connected", states
    assert {"provisioning", "synchronizing"} <= set(states), states
    assert account["connection"]["state"] == "connected", json.dumps(account)
    assert account["connection"]["last_error"] is None, json.dumps(account)
