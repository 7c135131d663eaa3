"""Run a real local Kubernetes control plane for tests and local use, without Docker.

Components: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, and a volume
provisioner (this file's ``provision`` command) that binds each pending PersistentVolumeClaim to a
hostPath volume, since there is no storage provisioner and kwok mounts nothing.

Usage from the repo root::

    python -m devtools.controlplane.cluster up [--dir .run/cluster]
    python -m devtools.controlplane.cluster status [--dir .run/cluster]
    python -m devtools.controlplane.cluster down [--dir .run/cluster]
    python devtools/controlplane/cluster.py provision --dir DIR   # run by `up` as a component

Binaries come from ``$ALGOEDGE_CONTROLPLANE_BIN`` or from ``devtools/controlplane/build.sh``
(instant when its cache is warm). Every component listens on a free loopback port only, runs
in its own process group, logs to ``DIR/logs/<component>.log`` and has its pid in
``DIR/pids/<component>.pid``. ``up`` always starts a fresh cluster (new etcd data); the PKI
in ``DIR/pki`` is kept so an exported KUBECONFIG stays valid across restarts.
Pods are "run" by kwok on one fake Node, so Deployments become ready without a kubelet.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if not __package__:  # run as a script by `up` (the provision and node-services components)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from devtools.controlplane import realnode

CONTROLPLANE_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = CONTROLPLANE_DIR / "build.sh"
KWOK_STAGES_DIR = CONTROLPLANE_DIR / "kwok" / "stages"
BIN_ENV = "ALGOEDGE_CONTROLPLANE_BIN"

#: kubeconfig context (and cluster) name; the pytest plugin allow-lists it for --kube-context.
CONTEXT_NAME = "algoedge-local"
#: The fake node kwok manages; kwok only touches nodes carrying KWOK_NODE_ANNOTATION.
FAKE_NODE_NAME = "kwok-node-0"
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
# Pod IPs kwok writes into pod status; nothing ever connects to them.
FAKE_POD_CIDR = "10.244.0.1/24"
LOOPBACK = "127.0.0.1"

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
)
#: Start order; stop runs in reverse.
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "volume-provisioner",
)
#: How often the volume provisioner looks for pending claims.
PROVISION_INTERVAL_SECONDS = 0.5


class ClusterError(RuntimeError):
    """The control plane could not be built, started, or reached."""


# ---------------------------------------------------------------------------------------
# Binaries


def find_binaries(*, build_script: Path = BUILD_SCRIPT) -> Path:
    """Return the directory holding all control-plane binaries, building them if needed."""
    from_env = os.environ.get(BIN_ENV)
    if from_env:
        bin_dir = Path(from_env)
    else:
        # build.sh prints progress on stderr (shown to the user) and the bin dir last on stdout.
        result = subprocess.run(
            ["bash", str(build_script)], stdout=subprocess.PIPE, text=True, check=False
        )
        if result.returncode != 0:
            raise ClusterError(f"{build_script} failed with exit code {result.returncode}")
        lines = result.stdout.strip().splitlines()
        if not lines:
            raise ClusterError(f"{build_script} printed no bin directory")
        bin_dir = Path(lines[-1])
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        source = f"${BIN_ENV}" if from_env else str(build_script)
        raise ClusterError(f"{bin_dir} (from {source}) lacks executables: {', '.join(missing)}")
    return bin_dir


# ---------------------------------------------------------------------------------------
# PKI


@dataclass(frozen=True)
class Pki:
    """Paths of the certificates and keys the control plane uses (all PEM)."""

    directory: Path

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.cert("ca")

    @property
    def service_account_key(self) -> Path:
        return self.key("service-account")

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "service-account.pub"


#: Client identities: file name -> (CN, O). Controller-manager and scheduler use their
#: built-in identities so RBAC's bootstrap roles apply; admin and kwok are cluster admins.
CLIENT_IDENTITIES: dict[str, tuple[str, str | None]] = {
    "admin": ("algoedge-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
    "kwok": ("kwok-controller", "system:masters"),
}


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _issue(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    is_ca: bool = False,
    usages: Sequence[x509.ObjectIdentifier] = (),
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650 if is_ca else 365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_pki(directory: Path) -> Pki:
    """Create CA, serving, client and service-account keys in ``directory`` unless present."""
    pki = Pki(directory)
    if (directory / "complete").exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("algoedge-local-ca")
    ca_cert = _issue(subject=ca_name, key=ca_key, issuer=ca_name, issuer_key=ca_key, is_ca=True)
    _write_key(pki.key("ca"), ca_key)
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        name: str,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: Sequence[x509.GeneralName] = (),
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(
            subject=subject, key=key, issuer=ca_name, issuer_key=ca_key, usages=[usage], sans=sans
        )
        _write_key(pki.key(name), key)
        pki.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    dns_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    ips = [LOOPBACK, KUBERNETES_SERVICE_IP]
    issue(
        "kube-apiserver",
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(n) for n in dns_names]
        + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips],
    )
    for name, (common_name, organization) in CLIENT_IDENTITIES.items():
        issue(name, _name(common_name, organization), ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.service_account_key, sa_key)
    pki.service_account_public_key.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (directory / "complete").touch()
    return pki


def write_kubeconfig(
    path: Path, *, server: str, pki: Pki, user: str, context: str = CONTEXT_NAME
) -> None:
    """Write a self-contained kubeconfig (certificates embedded) for one client identity."""

    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {"server": server, "certificate-authority-data": b64(pki.ca)},
            }
        ],
        "users": [
            {
                "name": f"{context}-{user}",
                "user": {
                    "client-certificate-data": b64(pki.cert(user)),
                    "client-key-data": b64(pki.key(user)),
                },
            }
        ],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": f"{context}-{user}"}}
        ],
        "current-context": context,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML; kubectl, helm, client-go and the Python client all read it.
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)


# ---------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); fields after the parenthesised command name are space-separated.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent can still reap it
        return None
    return int(fields[19])


@dataclass(frozen=True)
class PidRecord:
    """A started component: its pid (== its process group id) and start time, to avoid
    signalling an unrelated process that reused the pid of a killed run."""

    component: str
    pid: int
    start_ticks: int

    def alive(self) -> bool:
        return _start_ticks(self.pid) == self.start_ticks

    @classmethod
    def read(cls, path: Path) -> PidRecord | None:
        try:
            pid, start_ticks = path.read_text().split()
            return cls(path.stem, int(pid), int(start_ticks))
        except (OSError, ValueError):
            return None

    def write(self, path: Path) -> None:
        path.write_text(f"{self.pid} {self.start_ticks}\n")


def _die_with_parent() -> None:
    # Runs in the child before exec: kill it when the starting thread (the pytest process)
    # dies, so a killed test run leaks no control plane. SIGKILL, not SIGTERM: all
    # components get it at once, and an apiserver that loses etcd mid-shutdown hangs.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(content[-lines:])


# ---------------------------------------------------------------------------------------
# API access without the kubernetes client (keeps `up` fast and dependency-light)


class ApiServer:
    """Minimal HTTPS client for the local kube-apiserver using the admin certificate."""

    def __init__(self, *, port: int, pki: Pki) -> None:
        self.port = port
        self._context = ssl.create_default_context(cafile=str(pki.ca))
        self._context.load_cert_chain(str(pki.cert("admin")), str(pki.key("admin")))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection(
            LOOPBACK, self.port, context=self._context, timeout=10
        )
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read().decode(errors="replace")
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw)
        except json.JSONDecodeError:
            return response.status, raw


def _poll(
    what: str, check: Callable[[], bool], *, deadline: float, on_fail: Callable[[], str]
) -> None:
    """Call ``check`` until it returns True or the monotonic ``deadline`` passes."""
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException, ValueError) as error:
            last_error = error
        time.sleep(0.2)
    detail = f" (last error: {last_error!r})" if last_error else ""
    raise ClusterError(f"timed out waiting for {what}{detail}\n{on_fail()}")


# ---------------------------------------------------------------------------------------
# The control plane


@dataclass(frozen=True)
class Endpoints:
    """Ports of one run, persisted in DIR/state.json for `status`."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    kwok: int

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.apiserver}"

    @classmethod
    def allocate(cls) -> Endpoints:
        ports: list[int] = []
        while len(ports) < 4:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return cls(*ports)


class LocalControlPlane:
    """One control plane living in ``directory``; see the module docstring for the layout."""

    def __init__(
        self,
        directory: Path,
        *,
        bin_dir: Path | None = None,
        die_with_parent: bool = False,
        real_node: bool | None = None,
    ) -> None:
        self.directory = directory.resolve()
        #: Whether a real node (devtools/controlplane/realnode.py) runs beside kwok's; None:
        #: as the last `up` in this directory left it (the marker file).
        self.real_node_marker = self.directory / "real-node"
        self.real_node = self.real_node_marker.exists() if real_node is None else real_node
        self.node = realnode.RealNode(self.directory)
        self._bin_dir = bin_dir
        self.die_with_parent = die_with_parent
        self.pki = Pki(self.directory / "pki")
        self.kubeconfig = self.directory / "kubeconfig"
        self.logs = self.directory / "logs"
        self.pids = self.directory / "pids"
        self.state_file = self.directory / "state.json"
        # Children started by this object, polled so they do not linger as zombies.
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- paths -------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_binaries()
        return self._bin_dir

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def endpoints(self) -> Endpoints | None:
        try:
            return Endpoints(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS + (realnode.COMPONENTS if self.real_node else ())

    def pid_records(self) -> list[PidRecord]:
        records = (PidRecord.read(self.pids / f"{c}.pid") for c in self.components)
        return [r for r in records if r is not None]

    # -- lifecycle ---------------------------------------------------------------------

    def is_running(self) -> bool:
        """All components alive and the apiserver ready."""
        records = self.pid_records()
        endpoints = self.endpoints()
        if (
            len(records) != len(self.components)
            or not all(r.alive() for r in records)
            or endpoints is None
        ):
            return False
        try:
            status, _ = ApiServer(port=endpoints.apiserver, pki=self.pki).request("GET", "/readyz")
        except (OSError, http.client.HTTPException):
            return False
        return status == 200

    def start(self, *, timeout: float = 120.0) -> None:
        """Start a fresh cluster, cleaning up after any previous (possibly killed) run."""
        deadline = time.monotonic() + timeout
        bin_dir = self.bin_dir  # build (or find) before touching the directory
        archive = self._real_node_inputs(bin_dir) if self.real_node else None
        self.stop()
        self.real_node_marker.unlink(missing_ok=True)
        for stale in ("etcd", "logs", "pids", "kubeconfigs"):
            shutil.rmtree(self.directory / stale, ignore_errors=True)
        for directory in (self.logs, self.pids):
            directory.mkdir(parents=True)
        ensure_pki(self.pki.directory)
        endpoints = Endpoints.allocate()
        self.state_file.write_text(json.dumps(endpoints.__dict__) + "\n")
        api = ApiServer(port=endpoints.apiserver, pki=self.pki)
        try:
            self._start_etcd(bin_dir, endpoints, deadline)
            self._start_apiserver(bin_dir, endpoints, api, deadline)
            self._start_controllers(bin_dir, endpoints)
            write_kubeconfig(self.kubeconfig, server=endpoints.server, pki=self.pki, user="admin")
            self._spawn(
                "volume-provisioner",
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "provision",
                    f"--dir={self.directory}",
                ],
            )
            self._register_fake_node(api)
            self._wait_for_workloads_ready(api, deadline)
            if archive is not None:
                self.real_node_marker.touch()
                self._start_real_node(bin_dir, endpoints, archive, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop components in reverse start order: SIGTERM each process group, SIGKILL it
        after ``timeout``. One at a time, because an apiserver whose etcd is already gone
        hangs in retries instead of shutting down."""
        records = self.pid_records()
        real_node = self.real_node or any(r.component in realnode.COMPONENTS for r in records)
        for record in reversed(records):
            self._stop_one(record, timeout)
        for component in COMPONENTS + realnode.COMPONENTS:
            (self.pids / f"{component}.pid").unlink(missing_ok=True)
        if real_node:
            self.node.cleanup()

    # -- the real node -----------------------------------------------------------------

    def _real_node_inputs(self, bin_dir: Path) -> Path:
        missing = [b for b in realnode.BINARIES if not os.access(bin_dir / b, os.X_OK)]
        if missing:
            raise ClusterError(f"{bin_dir} lacks the real node's executables: {', '.join(missing)}")
        try:
            return realnode.build_images()
        except realnode.NodeError as error:
            raise ClusterError(str(error)) from error

    def _start_real_node(
        self, bin_dir: Path, endpoints: Endpoints, archive: Path, deadline: float
    ) -> None:
        node = self.node
        api = ApiServer(port=endpoints.apiserver, pki=self.pki)
        try:
            node.prepare(kubelet_port=free_port(), ca=self.pki.ca)
            containerd = self._spawn("containerd", node.containerd_argv())
            self._poll_component("containerd", containerd, node.containerd_ready, deadline)
            node.import_images(archive)
        except realnode.NodeError as error:
            raise ClusterError(str(error)) from error
        services = self._spawn(
            "node-services",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "node-services",
                f"--dir={self.directory}",
            ],
        )
        self._poll_component(
            "node-services (DNS, apiserver relay)",
            services,
            lambda: "apiserver relay on" in self.log_file("node-services").read_text(),
            deadline,
        )
        kubeconfig = self.kubeconfig
        self._spawn(
            "kube-proxy",
            node.kube_proxy_argv(
                bin_dir, kubeconfig, metrics_port=free_port(), healthz_port=free_port()
            ),
        )
        kubelet = self._spawn("kubelet", node.kubelet_argv(bin_dir, kubeconfig))

        def node_ready() -> bool:
            status, body = api.request("GET", f"/api/v1/nodes/{realnode.NODE_NAME}")
            conditions = body.get("status", {}).get("conditions", []) if status == 200 else []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        self._poll_component(
            f"node {realnode.NODE_NAME} Ready (kubelet)", kubelet, node_ready, deadline
        )
        # After the node registered (kube-router reads its address from the Node object); up is
        # ready once NetworkPolicies are enforced.
        kube_router = self._spawn(
            "kube-router",
            node.kube_router_argv(bin_dir, kubeconfig, service_cidr=SERVICE_CLUSTER_IP_RANGE),
        )
        try:
            self._poll_component(
                "kube-router's first NetworkPolicy sync",
                kube_router,
                lambda: realnode.kube_router_synced(self.log_file("kube-router").read_text()),
                deadline,
            )
        except realnode.NodeError as error:
            raise ClusterError(f"{error}\n{self._failure('kube-router')()}") from error

    def serve_node_forever(self) -> NoReturn:
        """The node-services component: cluster DNS and the apiserver relay until SIGTERM."""
        endpoints = self.endpoints()
        if endpoints is None:
            raise ClusterError(f"no running control plane in {self.directory}")
        api = ApiServer(port=endpoints.apiserver, pki=self.pki)
        asyncio.run(realnode.serve_node(api, endpoints.apiserver))
        raise ClusterError("node-services stopped")

    def _stop_one(self, record: PidRecord, timeout: float) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not record.alive():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, sig)
            deadline = time.monotonic() + timeout
            while record.alive() and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.05)

    def _reap(self) -> None:
        # Components started by this object become zombies until waited for; those of an
        # earlier `up` were re-parented and are reaped by init.
        self._processes = [p for p in self._processes if p.poll() is None]

    def _spawn(self, component: str, argv: list[str]) -> PidRecord:
        with self.log_file(component).open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # own process group: `down` signals the whole group
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self._processes.append(process)
        start_ticks = _start_ticks(process.pid)
        if start_ticks is None:
            raise ClusterError(f"{component} exited at once:\n{_tail(self.log_file(component))}")
        record = PidRecord(component, process.pid, start_ticks)
        record.write(self.pids / f"{component}.pid")
        return record

    def _failure(self, component: str, record: PidRecord | None = None) -> Callable[[], str]:
        def describe() -> str:
            log = self.log_file(component)
            state = "" if record is None or record.alive() else f"{component} exited. "
            return f"{state}Last lines of {log}:\n{_tail(log)}"

        return describe

    def _poll_component(
        self, what: str, record: PidRecord, check: Callable[[], bool], deadline: float
    ) -> None:
        def alive_and_ready() -> bool:
            if not record.alive():
                raise ClusterError(
                    f"{record.component} exited.\n{self._failure(record.component)()}"
                )
            return check()

        _poll(
            what,
            alive_and_ready,
            deadline=deadline,
            on_fail=self._failure(record.component, record),
        )

    def _start_etcd(self, bin_dir: Path, endpoints: Endpoints, deadline: float) -> None:
        client_url = f"http://{LOOPBACK}:{endpoints.etcd_client}"
        peer_url = f"http://{LOOPBACK}:{endpoints.etcd_peer}"
        record = self._spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=algoedge",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=algoedge={peer_url}",
                "--initial-cluster-state=new",
                # Throw-away test data: durability is not worth the fsync latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            connection = http.client.HTTPConnection(LOOPBACK, endpoints.etcd_client, timeout=2)
            try:
                connection.request("GET", "/health")
                body = json.loads(connection.getresponse().read())
            finally:
                connection.close()
            health: object = body.get("health")
            return health == "true"

        self._poll_component("etcd /health", record, healthy, deadline)

    def _start_apiserver(
        self, bin_dir: Path, endpoints: Endpoints, api: ApiServer, deadline: float
    ) -> None:
        pki = self.pki
        record = self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://{LOOPBACK}:{endpoints.etcd_client}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                # The endpoint reconciler refuses loopback advertise addresses, and nothing
                # in this cluster dials the `kubernetes` Service: publish no endpoints.
                "--endpoint-reconciler-type=none",
                f"--secure-port={endpoints.apiserver}",
                f"--cert-dir={self.directory / 'apiserver'}",
                f"--tls-cert-file={pki.cert('kube-apiserver')}",
                f"--tls-private-key-file={pki.key('kube-apiserver')}",
                f"--client-ca-file={pki.ca}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                # Namespaces annotated by realnode.namespace_annotations() put their pods on
                # the real node; the others are untouched.
                "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
                # logs/exec/port-forward on the real node's kubelet (x509 authentication).
                f"--kubelet-client-certificate={pki.cert('admin')}",
                f"--kubelet-client-key={pki.key('admin')}",
                "--kubelet-preferred-address-types=InternalIP",
            ],
        )

        def ready() -> bool:
            status, _ = api.request("GET", "/readyz")
            return status == 200

        self._poll_component("kube-apiserver /readyz", record, ready, deadline)

    def _start_controllers(self, bin_dir: Path, endpoints: Endpoints) -> None:
        pki = self.pki
        kubeconfigs = self.directory / "kubeconfigs"
        for user in ("kube-controller-manager", "kube-scheduler", "kwok"):
            write_kubeconfig(
                kubeconfigs / f"{user}.kubeconfig", server=endpoints.server, pki=pki, user=user
            )
        self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfigs / 'kube-controller-manager.kubeconfig'}",
                f"--bind-address={LOOPBACK}",
                "--secure-port=0",  # no health endpoint needed; readiness is judged by its effects
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca}",
                f"--cluster-signing-cert-file={pki.ca}",
                f"--cluster-signing-key-file={pki.key('ca')}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfigs / 'kube-scheduler.kubeconfig'}",
                f"--bind-address={LOOPBACK}",
                "--secure-port=0",
                "--leader-elect=false",
            ],
        )
        stages = sorted(KWOK_STAGES_DIR.glob("*.yaml"))
        if not stages:
            raise ClusterError(f"no kwok stage files in {KWOK_STAGES_DIR}")
        self._spawn(
            "kwok",
            [
                str(bin_dir / "kwok"),
                f"--kubeconfig={kubeconfigs / 'kwok.kubeconfig'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={'='.join(KWOK_NODE_ANNOTATION)}",
                f"--cidr={FAKE_POD_CIDR}",
                # The fake node's address and kwok's own server stay on loopback.
                f"--node-ip={LOOPBACK}",
                f"--node-port={endpoints.kwok}",
                f"--server-address={LOOPBACK}:{endpoints.kwok}",
                # Renew a node Lease like a kubelet, or the node controller marks the fake node
                # (and every pod on it) NotReady after ~40 s and the pods never recover.
                "--node-lease-duration-seconds=40",
                *(f"--config={stage}" for stage in stages),
            ],
        )

    def _register_fake_node(self, api: ApiServer) -> None:
        key, value = KWOK_NODE_ANNOTATION
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE_NAME,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": FAKE_NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": resources, "capacity": resources},
        }
        status, body = api.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ClusterError(f"creating node {FAKE_NODE_NAME} failed: HTTP {status}: {body}")

    def _wait_for_workloads_ready(self, api: ApiServer, deadline: float) -> None:
        records = {r.component: r for r in self.pid_records()}

        def all_alive() -> None:
            for component in COMPONENTS:
                record = records.get(component)
                if record is None or not record.alive():
                    raise ClusterError(f"{component} exited.\n{self._failure(component)()}")

        def node_ready() -> bool:
            all_alive()
            status, node = api.request("GET", f"/api/v1/nodes/{FAKE_NODE_NAME}")
            conditions = node.get("status", {}).get("conditions", []) if status == 200 else []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        def default_service_account() -> bool:
            all_alive()
            status, _ = api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return status == 200

        _poll(
            f"node {FAKE_NODE_NAME} Ready (kwok)",
            node_ready,
            deadline=deadline,
            on_fail=self._failure("kwok"),
        )
        _poll(
            "ServiceAccount default/default (controller-manager)",
            default_service_account,
            deadline=deadline,
            on_fail=self._failure("kube-controller-manager"),
        )

    def provision_forever(self) -> NoReturn:
        """The volume-provisioner component: bind pending claims until SIGTERM."""
        endpoints = self.endpoints()
        if endpoints is None:
            raise ClusterError(f"no running control plane in {self.directory}")
        api = ApiServer(port=endpoints.apiserver, pki=self.pki)
        while True:
            try:
                status, claims = api.request("GET", "/api/v1/persistentvolumeclaims")
                for claim in claims.get("items", []) if status == 200 else []:
                    volume = volume_for_claim(claim, self.directory / "volumes")
                    if volume is not None:
                        # Real for the real node's pods (kwok's mount nothing). World-writable
                        # like local-path-provisioner's: a hostPath volume gets no fsGroup.
                        path = Path(volume["spec"]["hostPath"]["path"])
                        path.mkdir(parents=True, exist_ok=True)
                        path.chmod(0o777)
                        status, body = api.request("POST", "/api/v1/persistentvolumes", volume)
                        if status in (201, 409):
                            print(
                                f"bound {volume['spec']['claimRef']} to {volume['metadata']['name']}"
                            )
                        else:
                            print(f"creating {volume['metadata']['name']}: HTTP {status}: {body}")
                sys.stdout.flush()
            except (OSError, http.client.HTTPException) as error:  # the apiserver restarting
                print(f"listing claims: {error}", flush=True)
            time.sleep(PROVISION_INTERVAL_SECONDS)

    # -- status ------------------------------------------------------------------------

    def status_lines(self) -> Iterator[str]:
        records = {r.component: r for r in self.pid_records()}
        for component in self.components:
            record = records.get(component)
            if record is None:
                state = "not started"
            else:
                state = f"pid {record.pid} {'running' if record.alive() else 'dead'}"
            yield f"{component:24} {state}    log: {self.log_file(component)}"
        endpoints = self.endpoints()
        if endpoints is not None and records:
            try:
                status, body = ApiServer(port=endpoints.apiserver, pki=self.pki).request(
                    "GET", "/readyz"
                )
                readyz = f"HTTP {status} {str(body).strip()}"
                yield f"{'apiserver /readyz':24} {readyz}    {endpoints.server}"
            except (OSError, http.client.HTTPException) as error:
                yield f"{'apiserver /readyz':24} unreachable: {error}"
        yield f"{'kubeconfig':24} {self.kubeconfig}"


# ---------------------------------------------------------------------------------------
# CLI


def _link_tools(plane: LocalControlPlane) -> dict[str, Path]:
    """Symlink kubectl and helm into DIR/../bin so `export PATH` finds the pinned versions."""
    link_dir = plane.directory.parent / "bin"
    link_dir.mkdir(parents=True, exist_ok=True)
    links: dict[str, Path] = {}
    for tool in ("kubectl", "helm"):
        link = link_dir / tool
        link.unlink(missing_ok=True)
        link.symlink_to(plane.binary(tool))
        links[tool] = link
    return links


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.controlplane.cluster", description=__doc__.split("\n")[0]
    )
    parser.add_argument("command", choices=("up", "down", "status", "provision", "node-services"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".run/cluster"),
        help="state directory (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness on `up`"
    )
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="`up`: also run a real node (containerd, kubelet; devtools/controlplane/realnode.py)",
    )
    args = parser.parse_args(argv)
    # `up` runs a real node only when asked; `down` and `status` follow the last `up`.
    plane = LocalControlPlane(args.dir, real_node=args.real_node if args.command == "up" else None)

    if args.command == "down":
        plane.stop()
        print(f"stopped control plane in {plane.directory}")
        return 0
    if args.command == "status":
        for line in plane.status_lines():
            print(line)
        return 0 if plane.is_running() else 1
    if args.command == "provision":
        plane.provision_forever()
    if args.command == "node-services":
        plane.serve_node_forever()

    started = time.monotonic()
    try:
        if plane.is_running():
            print(f"control plane already running in {plane.directory}")
        else:
            plane.start(timeout=args.timeout)
            print(f"control plane up in {time.monotonic() - started:.1f} s ({plane.directory})")
        links = _link_tools(plane)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"kubeconfig: {plane.kubeconfig}")
    for tool, link in links.items():
        print(f"{tool}: {link}")
    print(f"export KUBECONFIG={plane.kubeconfig} PATH={links['kubectl'].parent}:$PATH")
    return 0


def volume_for_claim(claim: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    """A hostPath PersistentVolume under ``root`` pre-bound to ``claim`` when it is Pending, else
    None.

    The local control plane has no storage provisioner, so a claim is satisfied by a directory
    of the cluster's (kwok mounts nothing; the real node's kubelet mounts it); the
    volume-provisioner component creates it and POSTs what this returns.
    """
    meta = claim["metadata"]
    if claim.get("status", {}).get("phase") != "Pending" or meta.get("deletionTimestamp"):
        return None
    name = f"pv-{meta['uid']}"
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"algoedge.dev/local-volume": "true"}},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(root / name), "type": "Directory"},
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
        },
    }


if __name__ == "__main__":
    sys.exit(main())
