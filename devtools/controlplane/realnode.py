"""A real node beside the kwok ones: containerd, kubelet, CNI, kube-proxy and a node-local DNS.

`LocalControlPlane(real_node=True)` (``cluster up --real-node``) starts these as components of
its own, logged to ``DIR/logs/<component>.log`` like the others:

- **containerd** (Debian's 1.6), its state under ``DIR/node/containerd``, its socket there too,
  CRI with ``restrict_oom_score_adj`` (root here lacks CAP_SYS_RESOURCE, so runc fails to lower
  ``oom_score_adj`` otherwise), cgroupfs, the pause image made by ``images/build.sh``;
- the images of ``images/build.sh`` imported with ``ctr -n k8s.io images import``;
- **kubelet** (built from the control plane's k8s.io/kubernetes pin), cgroup v1 allowed,
  registering ``NODE_NAME`` with the ``REAL_NODE_TAINT`` taint and ``REAL_NODE_LABEL`` label so
  that only pods that ask for it land here (:func:`namespace_annotations`);
- CNI from Debian's containernetworking-plugins: a ``bridge`` (``BRIDGE``, gateway ``GATEWAY``
  on ``POD_CIDR``) + ``host-local`` + ``portmap`` chain, ``loopback`` by containerd;
- **kube-proxy** (iptables mode) for Service ClusterIPs;
- **kube-router** in firewall-only mode: enforces NetworkPolicies with iptables chains and ipsets
  (bridged pod-to-pod traffic reaches them through ``net.bridge.bridge-nf-call-iptables``);
- **node-services** (:func:`node_services_forever`): a DNS server on ``GATEWAY:53`` answering
  ``<service>.<namespace>.svc.cluster.local`` from the API, and a TCP relay from
  ``GATEWAY:<port>`` to the apiserver on loopback, published as the ``kubernetes`` Service's
  endpoint so that pods (the operator) reach the API in-cluster.

Nothing listens outside loopback and the bridge's gateway address, which the node creates.
Side effects on the host, undone by :meth:`RealNode.cleanup` (``cluster down``): the bridge and
its veths, the pods' network namespaces under /run/netns, kube-proxy's and kube-router's
iptables chains, kube-router's ipsets, the ``kubepods`` cgroups, mounts under ``DIR/node``,
``net.ipv4.ip_forward`` (the CNI bridge plugin turns it on) and
``net.bridge.bridge-nf-call-iptables`` (turned on here), both restored to their earlier values.
One real node per host: a second refuses to start while the first is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

NODE_NAME = "algoedge-node-0"
BRIDGE = "algoedge0"
POD_CIDR = "10.244.1.0/24"
GATEWAY = "10.244.1.1"
CLUSTER_DOMAIN = "cluster.local"
#: The real node's label and taint key; pods select the label and tolerate the taint.
REAL_NODE_KEY = "algoedge.dev/real-node"
REAL_NODE_LABEL = (REAL_NODE_KEY, "true")
REAL_NODE_TAINT = {"key": REAL_NODE_KEY, "value": "true", "effect": "NoSchedule"}
PAUSE_IMAGE = "localhost/algoedge-pause:1"
#: The other images ``images/build.sh`` makes, as pods name them (pull policy Never: no registry).
APP_IMAGE = "localhost/algoedge:dev"
BRIDGE_IMAGE = "localhost/algoedge-bridge:dev"
OPERATOR_IMAGE = "localhost/algoedge-operator:dev"
REDIS_IMAGE = "localhost/algoedge-redis:7.0"
PGBOUNCER_IMAGE = "localhost/algoedge-pgbouncer:1.18"
CNI_BIN_DIR = Path("/usr/lib/cni")
IMAGES_SCRIPT = Path(__file__).resolve().parents[2] / "images" / "build.sh"
#: Host-wide: which cluster directory owns the one real node of this host.
OWNER_FILE = Path("/run/algoedge-realnode.owner")
KUBEPODS_CGROUPS = Path("/sys/fs/cgroup")
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "kube-router", "node-services")
#: Binaries the control plane's bin dir must hold for a real node.
BINARIES = ("kubelet", "kube-proxy", "kube-router")
#: Host settings the node changes, restored by :meth:`RealNode.cleanup` to their earlier values.
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
#: Bridged (same-node) pod-to-pod packets traverse iptables only with this on: without it
#: kube-router's chains never see them and NetworkPolicies stop nothing between pods.
BRIDGE_NF_CALL_IPTABLES = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
SYSCTLS = {"ip_forward": IP_FORWARD, "bridge_nf_call_iptables": BRIDGE_NF_CALL_IPTABLES}
#: kube-router's NetworkPolicy ipsets (its chains start with ``KUBE-`` like kube-proxy's).
KUBE_ROUTER_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "inet6:KUBE-SRC-", "inet6:KUBE-DST-")
#: kube-router logs this (``--v=1``) after each full sync; "Aborting sync" when one failed.
KUBE_ROUTER_SYNCED = "sync iptables took"
KUBE_ROUTER_FAILED = "Aborting sync"


class NodeError(RuntimeError):
    """The real node could not be prepared, started or cleaned up."""


def namespace_annotations() -> dict[str, str]:
    """Annotations that put every pod of a namespace on the real node (the apiserver's
    PodNodeSelector and PodTolerationRestriction admission plugins apply them)."""
    key, value = REAL_NODE_LABEL
    toleration = {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"}
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{key}={value}",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
    }


def build_images() -> Path:
    """``images/build.sh`` (cached); the docker-archive holding every image."""
    result = subprocess.run(["bash", str(IMAGES_SCRIPT)], stdout=subprocess.PIPE, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise NodeError(f"{IMAGES_SCRIPT} failed with exit code {result.returncode}")
    return Path(lines[-1])


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class RealNode:
    """Configuration, start-up steps and clean-up of the real node of the cluster in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root = directory / "node"
        self.containerd_dir = self.root / "containerd"
        self.socket = self.containerd_dir / "containerd.sock"
        self.kubelet_dir = self.root / "kubelet"
        self.cni_conf_dir = self.root / "cni" / "net.d"
        self.state_file = self.root / "state.json"

    # -- configuration (pure) --------------------------------------------------------

    def containerd_config(self) -> str:
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join(
            [
                "version = 2",
                f'root = "{self.containerd_dir / "root"}"',
                f'state = "{self.containerd_dir / "state"}"',
                "[grpc]",
                f'  address = "{self.socket}"',
                "[ttrpc]",
                '  address = ""',
                f"[{cri}]",
                f'  sandbox_image = "{PAUSE_IMAGE}"',
                "  restrict_oom_score_adj = true",
                '  stream_server_address = "127.0.0.1"',
                f"[{cri}.containerd]",
                '  snapshotter = "overlayfs"',
                '  default_runtime_name = "runc"',
                f"[{cri}.containerd.runtimes.runc]",
                '  runtime_type = "io.containerd.runc.v2"',
                f"[{cri}.containerd.runtimes.runc.options]",
                "  SystemdCgroup = false",
                f"[{cri}.cni]",
                f'  bin_dir = "{CNI_BIN_DIR}"',
                f'  conf_dir = "{self.cni_conf_dir}"',
                "",
            ]
        )

    def cni_config(self) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "name": "algoedge",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods reach nothing beyond the node
                    "hairpinMode": True,  # a pod reaches itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.root / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def kubelet_config(self, *, port: int, ca: Path) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # the host has cgroup v1 (and an empty unified mount)
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": GATEWAY,
            "port": port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(ca)},
            },
            # Only the apiserver (the admin client certificate) gets in.
            "authorization": {"mode": "AlwaysAllow"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [GATEWAY],
            # No host search domains in pods: names resolve in the cluster or not at all.
            "resolvConf": str(self.root / "resolv.conf"),
            "registerWithTaints": [REAL_NODE_TAINT],
            "maxPods": 60,
            # A busy shared disk must not evict the test's pods or delete its imported images.
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "localStorageCapacityIsolation": False,
        }

    # -- start-up --------------------------------------------------------------------

    def prepare(self, *, kubelet_port: int, ca: Path) -> None:
        """Claim the host's one real node, create the bridge and write every config."""
        self.claim_host()
        missing = [tool for tool in ("iptables", "ipset") if shutil.which(tool) is None]
        if missing:
            raise NodeError(
                f"{' and '.join(missing)} missing: kube-proxy and kube-router (NetworkPolicies) "
                f"need them; run `make system-deps` (apt-get install {' '.join(missing)})"
            )
        if not BRIDGE_NF_CALL_IPTABLES.exists():
            raise NodeError(
                f"{BRIDGE_NF_CALL_IPTABLES} is missing: NetworkPolicies cannot be enforced between "
                "pods of the bridge; load the br_netfilter module (modprobe br_netfilter)"
            )
        sysctls = {name: path.read_text().strip() for name, path in SYSCTLS.items()}
        shutil.rmtree(self.root, ignore_errors=True)  # cleaned up: nothing is mounted there
        self.root.mkdir(parents=True)
        netns_before = sorted(p.name for p in Path("/run/netns").glob("cni-*"))
        self.state_file.write_text(json.dumps({**sysctls, "netns_before": netns_before}) + "\n")
        BRIDGE_NF_CALL_IPTABLES.write_text("1")
        for directory in (self.containerd_dir, self.kubelet_dir, self.cni_conf_dir):
            directory.mkdir(parents=True, exist_ok=True)
        (self.containerd_dir / "config.toml").write_text(self.containerd_config())
        (self.cni_conf_dir / "10-algoedge.conflist").write_text(
            json.dumps(self.cni_config(), indent=2) + "\n"
        )
        (self.root / "resolv.conf").write_text("")
        (self.root / "kubelet.json").write_text(
            json.dumps(self.kubelet_config(port=kubelet_port, ca=ca), indent=2) + "\n"
        )
        # The bridge exists before any pod, so node-services can bind the gateway address.
        if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        prefix = POD_CIDR.split("/")[1]
        _run(["ip", "addr", "replace", f"{GATEWAY}/{prefix}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def claim_host(self) -> None:
        if (message := self.host_taken()) is not None:
            raise NodeError(message)
        with contextlib.suppress(OSError):
            owner = Path(OWNER_FILE.read_text().strip())
            if owner != self.directory:
                RealNode(owner).cleanup()
        OWNER_FILE.write_text(f"{self.directory}\n")

    def host_taken(self) -> str | None:
        """Why this cluster cannot have the host's one real node (another cluster's kubelet is
        alive) and what to do about it; None when it can."""
        try:
            owner = Path(OWNER_FILE.read_text().strip())
        except OSError:
            return None
        if owner == self.directory or not _cluster_alive(owner):
            return None
        return (
            f"another real node runs on this host (cluster {owner}; one per host: "
            f"{OWNER_FILE}). Wait for it to end (a `pytest --real-node` session stops its own), "
            "or stop it: .venv/bin/python -m devtools.controlplane.cluster down "
            f"--dir {owner}; then try again"
        )

    def containerd_argv(self) -> list[str]:
        return ["containerd", f"--config={self.containerd_dir / 'config.toml'}"]

    def kubelet_argv(self, bin_dir: Path, kubeconfig: Path) -> list[str]:
        key, value = REAL_NODE_LABEL
        return [
            str(bin_dir / "kubelet"),
            f"--config={self.root / 'kubelet.json'}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={GATEWAY}",
            f"--root-dir={self.kubelet_dir}",
            f"--cert-dir={self.kubelet_dir / 'pki'}",
            f"--node-labels={key}={value}",
            "--v=1",
        ]

    def kube_proxy_argv(
        self, bin_dir: Path, kubeconfig: Path, *, metrics_port: int, healthz_port: int
    ) -> list[str]:
        return [
            str(bin_dir / "kube-proxy"),
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_CIDR}",
            "--detect-local-mode=ClusterCIDR",
            # NodePorts only on the gateway; no route_localnet, no conntrack sysctls.
            f"--nodeport-addresses={GATEWAY}/32",
            "--iptables-localhost-nodeports=false",
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            f"--metrics-bind-address=127.0.0.1:{metrics_port}",
            f"--healthz-bind-address=127.0.0.1:{healthz_port}",
        ]

    def kube_router_argv(self, bin_dir: Path, kubeconfig: Path, *, service_cidr: str) -> list[str]:
        """kube-router as the NetworkPolicy enforcer only: no routing, no service proxy (kube-proxy
        does that), no listener (health and metrics ports off)."""
        return [
            str(bin_dir / "kube-router"),
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            f"--service-cluster-ip-range={service_cidr}",
            "--enable-ipv4=true",
            "--enable-ipv6=false",
            "--health-port=0",
            "--metrics-port=0",
            "--v=1",  # KUBE_ROUTER_SYNCED is a V(1) line
        ]

    def import_images(self, archive: Path) -> None:
        _run(
            [
                "ctr",
                f"--address={self.socket}",
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
                str(archive),
            ]
        )

    def containerd_ready(self) -> bool:
        probe = ["ctr", f"--address={self.socket}", "version"]
        return self.socket.exists() and _run(probe, check=False).returncode == 0

    # -- clean-up --------------------------------------------------------------------

    def kill_pods(self) -> None:
        """SIGKILL every process in the kubepods cgroups, then the containerd shims of this node."""
        for procs in sorted(KUBEPODS_CGROUPS.glob("*/kubepods/**/cgroup.procs")):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for shim in self._shim_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(shim, signal.SIGKILL)

    def _shim_pids(self) -> list[int]:
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                argv = cmdline.read_bytes().split(b"\0")
                if (
                    argv
                    and argv[0].endswith(b"containerd-shim-runc-v2")
                    and (str(self.socket).encode() in argv)
                ):
                    pids.append(int(cmdline.parent.name))
        return pids

    def cleanup(self) -> None:
        """Undo what the node did to the host (its processes are stopped already). Nothing when
        another cluster's node is alive: the kubepods cgroups, the bridge and the iptables chains
        are host-wide, and a refused second start (whose clean-up runs) must not wreck them."""
        if self.host_taken() is not None:
            return
        self.kill_pods()
        state: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(self.state_file.read_text())
        # Mounts under the node's directory (kubelet's root, overlay snapshots, shm), deepest first.
        root = str(self.root.resolve()) + "/"
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(root)
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            _run(["umount", "-l", mount], check=False)
        before = set(state.get("netns_before", []))
        for netns in Path("/run/netns").glob("cni-*"):
            if netns.name not in before:
                _run(["umount", "-l", str(netns)], check=False)
                with contextlib.suppress(OSError):
                    netns.unlink()
        _run(["ip", "link", "delete", BRIDGE], check=False)
        remove_kube_chains()
        remove_kube_router_ipsets()  # after the chains: an ipset in use cannot be destroyed
        for kubepods in sorted(KUBEPODS_CGROUPS.glob("*/kubepods")):
            for directory in sorted(kubepods.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
        for name, path in SYSCTLS.items():
            if name in state:
                with contextlib.suppress(OSError):
                    path.write_text(str(state[name]))
        with contextlib.suppress(OSError):
            if Path(OWNER_FILE.read_text().strip()) == self.directory:
                OWNER_FILE.unlink()


def remove_kube_chains() -> None:
    """Delete kube-proxy's ``KUBE-*`` chains and the rules jumping to them (IPv4 and IPv6); a
    no-op when there are none."""
    for tool in ("iptables", "ip6tables"):
        for table in ("nat", "filter", "mangle"):
            rules = _run([tool, "-t", table, "-S"], check=False).stdout.splitlines()
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for rule in rules:
                argv = shlex.split(rule)
                if argv[:1] == ["-A"] and not argv[1].startswith("KUBE-") and "KUBE-" in rule:
                    _run([tool, "-t", table, "-D", *argv[1:]], check=False)
            for action in ("-F", "-X"):
                for chain in chains:
                    _run([tool, "-t", table, action, chain], check=False)


def kube_router_synced(log: str) -> bool:
    """Whether kube-router's log shows a completed full sync; raises on a failed one."""
    if KUBE_ROUTER_FAILED in log:
        failed = next(line for line in log.splitlines() if KUBE_ROUTER_FAILED in line)
        raise NodeError(f"kube-router could not apply the NetworkPolicies: {failed}")
    return KUBE_ROUTER_SYNCED in log


def remove_kube_router_ipsets() -> None:
    """Destroy kube-router's ipsets (a no-op without any, or without the ipset tool)."""
    if shutil.which("ipset") is None:
        return
    names = _run(["ipset", "list", "-n"], check=False).stdout.split()
    for name in names:
        if name.startswith(KUBE_ROUTER_IPSET_PREFIXES):
            _run(["ipset", "destroy", name], check=False)


def container_pids(container_id: str) -> list[int]:
    """Host pids of the processes of one container of the real node (``containerd://<id>`` or
    the bare id), found by their cgroup path. Tests signal them from outside: the container's
    PID 1 ignores SIGSTOP sent from inside its own pid namespace."""
    container_id = container_id.removeprefix("containerd://")
    pids = []
    for cgroup in Path("/proc").glob("[0-9]*/cgroup"):
        with contextlib.suppress(OSError):
            if container_id in cgroup.read_text():
                pids.append(int(cgroup.parent.name))
    return pids


def _cluster_alive(directory: Path) -> bool:
    """Whether any component of the cluster in ``directory`` lives: its kubelet, or, while its
    node is still starting (the host claimed, no kubelet yet), its apiserver or containerd."""
    for record in (directory / "pids").glob("*.pid"):
        try:
            pid, start_ticks = record.read_text().split()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            continue
        if stat[stat.rindex(")") + 2 :].split()[19] == start_ticks:
            return True
    return False


# ---------------------------------------------------------------------------------------
# node-services: cluster DNS and the apiserver relay


class ServiceLookup:
    """A/AAAA answers for ``<service>.<namespace>.svc.<domain>`` from the API."""

    def __init__(self, get: Any) -> None:
        #: ``get(path) -> (status, body)``: the control plane's ApiServer.request("GET", ...)
        self._get = get

    def addresses(self, name: str) -> list[str] | None:
        """IPv4 addresses of ``name``; [] for a known name without any; None for no such name."""
        name = name.lower().rstrip(".")
        suffix = f".svc.{CLUSTER_DOMAIN}"
        if not name.endswith(suffix):
            return None
        parts = name[: -len(suffix)].split(".")
        if len(parts) != 2:
            return None
        service, namespace = parts
        status, body = self._get(f"/api/v1/namespaces/{namespace}/services/{service}")
        if status != 200:
            return None
        cluster_ip = body.get("spec", {}).get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            return [cluster_ip]
        status, slices = self._get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
            f"?labelSelector=kubernetes.io/service-name%3D{service}"
        )
        found: list[str] = []
        for item in slices.get("items", []) if status == 200 else []:
            for endpoint in item.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready", True):
                    found.extend(endpoint.get("addresses", []))
        return found


def dns_answer(query: bytes, lookup: ServiceLookup) -> bytes | None:
    """The response to one DNS query datagram (None: not a query worth answering)."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    labels, offset = [], 12
    while offset < len(query) and query[offset] != 0:
        length = query[offset]
        labels.append(query[offset + 1 : offset + 1 + length].decode(errors="replace"))
        offset += 1 + length
    offset += 1
    if offset + 4 > len(query):
        return None
    qtype, _ = struct.unpack("!HH", query[offset : offset + 4])
    question = query[12 : offset + 4]
    addresses = lookup.addresses(".".join(labels))
    rcode = 3 if addresses is None else 0  # NXDOMAIN
    answers = b""
    if addresses and qtype == 1:  # A
        for address in addresses:
            answers += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton(address)
    count = len(addresses) if addresses and qtype == 1 else 0
    header = struct.pack("!HHHHHH", ident, 0x8180 | (flags & 0x0100) | rcode, 1, count, 0, 0)
    return header + question + answers


class _Dns(asyncio.DatagramProtocol):
    def __init__(self, lookup: ServiceLookup) -> None:
        self.lookup = lookup
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        async def answer() -> None:
            try:
                response = await asyncio.to_thread(dns_answer, data, self.lookup)
            except (OSError, ValueError) as error:
                print(f"dns: {error!r}", flush=True)
                return
            if response is not None and self.transport is not None:
                self.transport.sendto(response, addr)

        asyncio.get_running_loop().create_task(answer())


async def _relay(
    target_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        writer.close()
        return

    async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()

    await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))


def kubernetes_endpoint_slice(port: int) -> dict[str, Any]:
    """The ``kubernetes`` Service's endpoint: the relay on the gateway address."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "algoedge-node-services",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [GATEWAY], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


async def serve_node(api: Any, apiserver_port: int) -> None:
    """DNS on GATEWAY:53 and the apiserver relay on GATEWAY:<free port>, until cancelled."""
    loop = asyncio.get_running_loop()
    lookup = ServiceLookup(lambda path: api.request("GET", path))
    await loop.create_datagram_endpoint(lambda: _Dns(lookup), local_addr=(GATEWAY, 53))
    server = await asyncio.start_server(
        lambda r, w: _relay(apiserver_port, r, w), host=GATEWAY, port=0
    )
    port = server.sockets[0].getsockname()[1]
    endpoint_slice = kubernetes_endpoint_slice(port)
    path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
    status, body = await asyncio.to_thread(api.request, "POST", path, endpoint_slice)
    if status == 409:
        status, body = await asyncio.to_thread(
            api.request, "PUT", f"{path}/kubernetes", endpoint_slice
        )
    if status not in (200, 201):
        raise NodeError(f"publishing the kubernetes endpoint: HTTP {status}: {body}")
    print(f"dns on {GATEWAY}:53, apiserver relay on {GATEWAY}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def wait_for(what: str, check: Any, *, timeout: float, describe: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.3)
    raise NodeError(f"timed out waiting for {what}\n{describe()}")
