"""Fixtures for operator e2e tests: the CRD, a controllable capacity server, the operator in-process.

Pending claims (a tenant's managed Redis) are bound by the control plane's volume-provisioner,
and kwok renews the fake node's Lease (both in devtools/controlplane/cluster.py).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from kopf.testing import KopfRunner

from devtools.controlplane.pytest_plugin import KubeCluster
from tests.e2e.operator.support import raw, wait_until

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "crds" / "algoedge.io_algoedgetenants.yaml"


@pytest.fixture(scope="session")
def crd(k8s: KubeCluster) -> None:
    manifest = yaml.safe_load(CRD_FILE.read_text())
    raw(
        k8s,
        "PATCH",
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{manifest['metadata']['name']}"
        "?fieldManager=algoedge-e2e&force=true",
        manifest,
        content_type="application/apply-patch+yaml",
    )

    def established() -> bool:
        found = k8s.apiext.read_custom_resource_definition("algoedgetenants.algoedge.io")
        conditions = (found.status.conditions if found.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_until("the AlgoEdgeTenant CRD to be established", established, timeout=60)


@dataclass
class CapacityServer:
    """A real HTTP server on 127.0.0.1 answering /{namespace}/{name} as the test tells it."""

    port: int = 0
    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Tokens the tests expect, per tenant; a wrong Bearer token gets 401 like the real API.
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{namespace}}/{{name}}/internal/v1/capacity"

    def answer(
        self,
        namespace: str,
        name: str,
        *,
        linked: int = 0,
        backlog: dict[str, int] | None = None,
        sockets: int | None = None,
    ) -> None:
        self.answers[(namespace, name)] = {
            "linked_accounts": linked,
            "connected_accounts": linked,
            "queue_backlog": backlog or {},
            # Absent unless given, like an API from before the count existed.
            **({} if sockets is None else {"connected_sockets": sockets}),
        }

    async def handle(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        self.requests.append(key)
        expected = self.tokens.get(key)
        if expected is not None and request.headers.get("Authorization") != f"Bearer {expected}":
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        if key not in self.answers:
            return web.json_response({"title": "Not Found", "status": 404}, status=404)
        return web.json_response(self.answers[key])


@pytest.fixture(scope="session")
def capacity_server() -> Iterator[CapacityServer]:
    """Served from its own thread and loop: the tests block while they poll the cluster."""
    server = CapacityServer()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    app = web.Application()
    app.router.add_get("/{namespace}/{name}/internal/v1/capacity", server.handle)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", server.port)
        await site.start()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    server.port = free_port()
    thread = threading.Thread(target=serve, name="capacity-server", daemon=True)
    thread.start()
    assert started.wait(10), "the capacity server did not start"
    yield server
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Operator:
    runner: KopfRunner
    metrics_url: str


@pytest.fixture
def operator_env(
    k8s: KubeCluster, capacity_server: CapacityServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Settings for the operator under test; a test may change them before `operator` starts."""
    return {
        "KUBECONFIG": str(k8s.kubeconfig),
        "ALGOEDGE_OPERATOR_CAPACITY_URL": capacity_server.url_template,
        "ALGOEDGE_OPERATOR_SCALE_INTERVAL": "1",
        "ALGOEDGE_OPERATOR_RESYNC_INTERVAL": "2",
        "ALGOEDGE_OPERATOR_CAPACITY_TIMEOUT": "2",
        "ALGOEDGE_OPERATOR_HTTP_HOST": "127.0.0.1",
        "ALGOEDGE_OPERATOR_HTTP_PORT": str(free_port()),
    }


@pytest.fixture
def operator(
    crd: None,
    operator_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Operator]:
    """The operator, in this process, exactly as `kopf run --all-namespaces -m algoedge_operator`."""
    for key, value in operator_env.items():
        monkeypatch.setenv(key, value)
    runner = KopfRunner(
        ["run", "--all-namespaces", "--standalone", "-m", "algoedge_operator"],
        timeout=60,
    )
    with runner:
        yield Operator(
            runner=runner,
            metrics_url=f"http://127.0.0.1:{operator_env['ALGOEDGE_OPERATOR_HTTP_PORT']}/metrics",
        )
    assert runner.exception is None, runner.exception
    assert runner.exit_code == 0, runner.output
    assert "Traceback" not in runner.output, runner.output
