"""pytest plugin giving e2e tests a Kubernetes cluster (`k8s`) and a fresh namespace per test.

Where the cluster comes from, in order:

* ``--kube-context NAME``: an existing cluster from the user's kubeconfig, only when NAME is
  ``kind-*`` or the local control plane's context (``algoedge-local``), so a test run can
  never touch a real cluster by accident;
* ``--kind``: a throw-away kind cluster via pytest-kind, where a Docker engine is running
  (skipped with the reason elsewhere);
* otherwise: the local control plane of ``devtools/controlplane/cluster.py``, started in a
  temporary directory for the session, only when a test requests ``k8s``; with ``--real-node``
  it also runs a real node (``devtools/controlplane/realnode.py``: containerd, kubelet, the
  images of ``images/build.sh``), which the ``real_node`` fixture requires.

kubectl and helm always come from ``devtools/controlplane/build.sh`` (or
``$ALGOEDGE_CONTROLPLANE_BIN``); when collected tests need ``k8s`` the build runs after
collection, outside any per-test timeout. Heavy imports (kubernetes, cryptography) happen
only inside the fixtures, so environments without them can load this plugin.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from kubernetes import client as k8s_client

#: Contexts --kube-context accepts; the second is cluster.CONTEXT_NAME (a test checks it).
ALLOWED_CONTEXTS = ("kind-*", "algoedge-local")
KIND_CLUSTER_NAME = "algoedge-e2e"
NAMESPACE_LABEL = "algoedge.dev/e2e-test"


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], *, timeout: float = 120.0) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail after ``timeout``.

    Cluster state converges asynchronously: tests wait for it with a deadline, never a sleep.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last probe: {last!r})")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("algoedge-k8s", "Kubernetes cluster for e2e tests")
    group.addoption(
        "--kube-context",
        metavar="NAME",
        default=None,
        help=(
            "run e2e tests against context NAME of your kubeconfig instead of a local control "
            f"plane; only {' or '.join(ALLOWED_CONTEXTS)} are accepted"
        ),
    )
    group.addoption(
        "--real-node",
        action="store_true",
        default=False,
        help="the local control plane also runs a real node (containerd + kubelet) for tests "
        "using the real_node fixture (tests/e2e/realnode); Linux as root",
    )
    group.addoption(
        "--kind",
        action="store_true",
        default=False,
        help="run e2e tests in a kind cluster made by pytest-kind (needs a running Docker engine)",
    )


def context_allowed(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in ALLOWED_CONTEXTS)


def pytest_configure(config: pytest.Config) -> None:
    context: str | None = config.getoption("--kube-context")
    if context is not None and not context_allowed(context):
        raise pytest.UsageError(
            f"--kube-context {context!r} is not allowed: e2e tests create and delete namespaces, "
            f"so only contexts matching {', '.join(ALLOWED_CONTEXTS)} may be used"
        )
    if context is not None and config.getoption("--kind"):
        raise pytest.UsageError("--kube-context and --kind are mutually exclusive")


def pytest_collection_finish(session: pytest.Session) -> None:
    # Building from cold takes tens of minutes: do it here, not inside a timed test.
    if session.config.option.collectonly:
        return
    fixtures = {"k8s", "real_node"}
    if any(fixtures & set(getattr(item, "fixturenames", ())) for item in session.items):
        from devtools.controlplane.cluster import find_binaries

        find_binaries()
        if session.config.getoption("--real-node"):
            from devtools.controlplane.realnode import build_images

            build_images()


def docker_engine_running() -> str | None:
    """None if a Docker engine answers on its socket, else why not."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return f"DOCKER_HOST={host} is not a unix socket; only local engines are probed"
    path = host.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
    except OSError as error:
        return f"no Docker engine answers on {path}: {error}"
    if b" 200 " not in reply:
        return f"Docker engine on {path} answered {reply!r} to /_ping"
    return None


@dataclass
class KubeCluster:
    """What an e2e test needs to talk to the cluster. API objects are kubernetes-client APIs."""

    kubeconfig: Path
    context: str
    kubectl: Path
    helm: Path
    #: Private HELM_* homes so helm never reads or writes the user's configuration.
    helm_home: Path
    api_client: k8s_client.ApiClient
    core: k8s_client.CoreV1Api = field(init=False)
    apps: k8s_client.AppsV1Api = field(init=False)
    apiext: k8s_client.ApiextensionsV1Api = field(init=False)
    custom: k8s_client.CustomObjectsApi = field(init=False)
    #: Whether the cluster has the local real node (``--real-node``).
    real_node: bool = False

    def __post_init__(self) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.apiext = client.ApiextensionsV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

    @property
    def env(self) -> dict[str, str]:
        """Environment for kubectl/helm: this cluster only, private helm state."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        for kind in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{kind}_HOME"] = str(self.helm_home / kind.lower())
        return env

    def run(
        self, tool: Path, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl or helm against this cluster; failures raise with their output."""
        result = subprocess.run(
            [str(tool), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool.name} {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def kubectl_run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl, *args, **kwargs)

    def helm_run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm, *args, **kwargs)


def _api_client(kubeconfig: Path, context: str) -> k8s_client.ApiClient:
    from kubernetes import client, config

    configuration = client.Configuration()
    # kube_config's loaders carry no annotations even though the package ships py.typed.
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), context=context, client_configuration=configuration
    )
    return client.ApiClient(configuration)


def _single_context_kubeconfig(kubectl: Path, context: str, target: Path) -> Path:
    """Copy only ``context`` (credentials embedded) out of the user's kubeconfig, so every
    tool run by the tests can reach that cluster and no other."""
    result = subprocess.run(
        [str(kubectl), "config", "view", "--minify", "--flatten", "--raw", f"--context={context}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        # Stop the session: every e2e test would fail the same way.
        pytest.exit(
            f"--kube-context {context!r}: {result.stderr.strip()}", pytest.ExitCode.USAGE_ERROR
        )
    target.write_text(result.stdout)
    target.chmod(0o600)
    return target


@contextlib.contextmanager
def _kind_cluster() -> Iterator[tuple[Path, str]]:
    """A pytest-kind cluster for the session; skips where it cannot run."""
    reason = docker_engine_running()
    if reason is not None:
        pytest.skip(f"--kind: {reason}")
    kind_module = pytest.importorskip("pytest_kind", reason="--kind needs pytest-kind installed")
    cluster = kind_module.KindCluster(KIND_CLUSTER_NAME)
    cluster.create()
    try:
        yield Path(cluster.kubeconfig_path), f"kind-{KIND_CLUSTER_NAME}"
    finally:
        cluster.delete()


@contextlib.contextmanager
def _local_control_plane(
    bin_dir: Path, directory: Path, *, real_node: bool
) -> Iterator[tuple[Path, str]]:
    from devtools.controlplane.cluster import CONTEXT_NAME, LocalControlPlane

    # die_with_parent: a killed pytest takes its control plane with it (a real node's pods and
    # mounts are then cleaned up by the next real node's start).
    plane = LocalControlPlane(directory, bin_dir=bin_dir, die_with_parent=True, real_node=real_node)
    plane.start(timeout=300.0 if real_node else 120.0)
    try:
        yield plane.kubeconfig, CONTEXT_NAME
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def k8s(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeCluster]:
    """A Kubernetes cluster for the whole session (see the module docstring for which)."""
    from devtools.controlplane.cluster import find_binaries

    bin_dir = find_binaries()
    workdir = tmp_path_factory.mktemp("k8s")
    context: str | None = request.config.getoption("--kube-context")
    real_node = bool(request.config.getoption("--real-node")) and context is None
    real_node = real_node and not request.config.getoption("--kind")
    with contextlib.ExitStack() as stack:
        if context is not None:
            kubeconfig = _single_context_kubeconfig(
                bin_dir / "kubectl", context, workdir / "kubeconfig"
            )
        elif request.config.getoption("--kind"):
            kubeconfig, context = stack.enter_context(_kind_cluster())
        else:
            kubeconfig, context = stack.enter_context(
                _local_control_plane(bin_dir, workdir / "cluster", real_node=real_node)
            )
        api_client = _api_client(kubeconfig, context)
        stack.callback(api_client.close)
        yield KubeCluster(
            kubeconfig=kubeconfig,
            context=context,
            kubectl=bin_dir / "kubectl",
            helm=bin_dir / "helm",
            helm_home=workdir / "helm",
            api_client=api_client,
            real_node=real_node,
        )


@pytest.fixture
def namespace(k8s: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace made for this test alone, deleted (without waiting) afterwards."""
    from kubernetes import client

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"})
    )
    k8s.core.create_namespace(body)
    yield name
    delete_namespace(k8s, name)


def delete_namespace(k8s: KubeCluster, name: str) -> None:
    """Delete a namespace without waiting; one already gone is fine."""
    from kubernetes import client

    try:
        k8s.core.delete_namespace(name, propagation_policy="Background")
    except client.ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture(scope="session")
def real_node(request: pytest.FixtureRequest) -> KubeCluster:
    """The cluster, when it has the local real node (``--real-node``); skips otherwise, before
    any cluster is started."""
    if not request.config.getoption("--real-node"):
        pytest.skip("needs --real-node (`make test` runs tests/e2e/realnode with it)")
    k8s: KubeCluster = request.getfixturevalue("k8s")
    if not k8s.real_node:
        pytest.skip("--real-node applies to the local control plane, not --kube-context/--kind")
    return k8s
