"""Scale benchmark of the AlgoEdgeTenant operator: N tenants created at once, from nothing to Ready.

One command does everything for each N, then cleans up:

1. starts a fresh local control plane (``devtools.controlplane.cluster``) in a temp directory, applies
   the CRD, adds kwok nodes big enough for N tenants' pods, creates one namespace and one
   database Secret per tenant (the control plane's volume-provisioner component binds the
   managed Redis claims to hostPath volumes);
2. starts the operator as a real separate process, exactly as deployed
   (``kopf run --all-namespaces --standalone -m algoedge_operator``) with ``ALGOEDGE_OPERATOR_*``
   settings, its capacity URL pointing at a small aiohttp server on 127.0.0.1 that answers one
   fixed report for every tenant (so the scalers run every interval and decide nothing);
3. creates the N tenants at once, watches them until every one reports ``Ready=True`` (bounded
   by ``--timeout``), then stays for ``--steady-resyncs`` resync periods;
4. prints Markdown: total and per-tenant time to Ready, the API server's own request counts
   (``apiserver_request_total`` from its /metrics, read as admin) per tenant while converging
   and per resync afterwards, and the operator's RSS (``/proc/<pid>/status``) and CPU time.

Run from the repository root: ``.venv/bin/python -m bench.operator_scale --tenants 50,200``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import ctypes
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from algoedge_operator.model import GROUP, PLURAL, VERSION
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

from devtools.controlplane.cluster import (
    FAKE_NODE_NAME,
    KWOK_NODE_ANNOTATION,
    LOOPBACK,
    LocalControlPlane,
    free_port,
)
from devtools.controlplane.kubeapi import OPERATOR_RESOURCES, WRITE_VERBS, api_request

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "algoedge.io_algoedgetenants.yaml"
KOPF = Path(sys.executable).with_name("kopf")
DATABASE_URL = "postgresql://bench:s3cret@db.example.com:5432/bench?sslmode=require"
OPERATOR_GETS = OPERATOR_RESOURCES - {"algoedgetenants"}
#: Pods one tenant of the benchmark's spec runs (api 1, worker 1, beat 1, pgbouncer 2, redis 1,
#: bridge 1) plus headroom; sizes the extra kwok nodes.
PODS_PER_TENANT = 8
PODS_PER_NODE = 500


class BenchError(RuntimeError):
    """The benchmark could not finish; the message says where and what it saw."""


# ---------------------------------------------------------------------------------------------
# Measurements


def machine_facts() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status, or None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


RequestCounts = Counter[tuple[str, str, str]]


def request_counts(text: str) -> RequestCounts:
    """``apiserver_request_total`` by (verb, resource, subresource), summed over codes etc."""
    counts: RequestCounts = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = (
                labels.get("verb", ""),
                labels.get("resource", ""),
                labels.get("subresource", ""),
            )
            counts[key] += int(sample.value)
    return counts


def is_operator_kind(resource: str, subresource: str) -> bool:
    if resource not in OPERATOR_RESOURCES:
        return False
    return not subresource or (resource == "algoedgetenants" and subresource == "status")


@dataclass(frozen=True)
class Traffic:
    """API server requests between two /metrics snapshots."""

    writes_total: int
    writes_operator_kinds: int
    gets_operator_kinds: int
    #: Writes by "verb resource[/subresource]", largest first (what the totals are made of).
    writes_by_resource: dict[str, int]
    #: GETs of the operator's kinds by resource, largest first.
    gets_by_resource: dict[str, int]

    @classmethod
    def between(cls, before: RequestCounts, after: RequestCounts) -> Traffic:
        delta = after.copy()
        delta.subtract(before)
        writes = {k: v for k, v in delta.items() if k[0] in WRITE_VERBS and v > 0}
        by_resource = Counter(
            {f"{verb} {res}{'/' + sub if sub else ''}": n for (verb, res, sub), n in writes.items()}
        )
        return cls(
            writes_total=sum(writes.values()),
            writes_operator_kinds=sum(n for k, n in writes.items() if is_operator_kind(k[1], k[2])),
            gets_operator_kinds=sum(
                n
                for (verb, res, sub), n in delta.items()
                if verb == "GET" and res in OPERATOR_GETS and not sub
            ),
            writes_by_resource=dict(by_resource.most_common()),
            gets_by_resource=dict(
                Counter(
                    {
                        res: n
                        for (verb, res, sub), n in delta.items()
                        if verb == "GET" and res in OPERATOR_GETS and not sub and n > 0
                    }
                ).most_common()
            ),
        )


def operator_counters(text: str) -> dict[str, float]:
    """The operator's own counters from its /metrics, by sample name and labels."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("algoedge_operator_"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, int]:
    return {
        key: int(value - before.get(key, 0.0))
        for key, value in sorted(after.items())
        if value - before.get(key, 0.0) > 0
    }


# ---------------------------------------------------------------------------------------------
# The cluster side


class Cluster:
    """Admin access to one local control plane: raw JSON requests, no typed models."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=configuration
        )
        # Creates run from a thread pool; the default pool (cpu_count * 5) would make them queue.
        configuration.connection_pool_maxsize = 32
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        try:
            return api_request(
                self.api_client, method, path, body, content_type=content_type, ok=ok
            )
        except client.ApiException as error:
            raise BenchError(
                f"{method} {path}: HTTP {error.status}: {str(error.reason)[:500]}"
            ) from None

    def request_counts(self) -> RequestCounts:
        return request_counts(str(self.request("GET", "/metrics")))


def wait_for(
    what: str, check: Callable[[], bool], *, deadline: float, interval: float = 0.5
) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"deadline passed while waiting for {what}")
        time.sleep(interval)


def apply_crd(cluster: Cluster, deadline: float) -> None:
    manifest = yaml.safe_load(CRD_FILE.read_text())
    name = manifest["metadata"]["name"]
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    cluster.request(
        "PATCH",
        path + "?fieldManager=algoedge-bench&force=true",
        manifest,
        content_type="application/apply-patch+yaml",
    )

    def established() -> bool:
        conditions = (cluster.request("GET", path).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for("the AlgoEdgeTenant CRD to be established", established, deadline=deadline)

    def served() -> bool:
        # Established comes before the resource's storage is ready (429 "storage is
        # (re)initializing"), which kopf would log as errors at start-up.
        listing = cluster.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}", ok=(200, 429))
        return isinstance(listing, dict) and listing.get("kind") != "Status"

    wait_for("AlgoEdgeTenants to be served", served, deadline=deadline)


def add_nodes(cluster: Cluster, tenants: int, deadline: float) -> list[str]:
    """kwok nodes with room for every tenant's pods; the default one holds 110 pods and a /24
    of pod IPs, so each extra node brings its own podCIDR (kwok takes pod IPs from it)."""
    count = math.ceil(tenants * PODS_PER_TENANT / PODS_PER_NODE)
    resources = {"cpu": "1k", "memory": "4Ti", "pods": str(PODS_PER_NODE)}
    key, value = KWOK_NODE_ANNOTATION
    names = [f"kwok-bench-{index}" for index in range(count)]
    for index, name in enumerate(names):
        cluster.request(
            "POST",
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
                },
                "spec": {"podCIDR": f"10.{100 + index}.0.0/20"},
                "status": {"allocatable": resources, "capacity": resources},
            },
        )

    def all_ready() -> bool:
        for name in [FAKE_NODE_NAME, *names]:
            node = cluster.request("GET", f"/api/v1/nodes/{name}")
            conditions = (node.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return False
        return True

    wait_for(f"{count} extra kwok nodes to be Ready", all_ready, deadline=deadline)
    return names


def tenant_names(count: int) -> list[tuple[str, str]]:
    """(namespace, name) per tenant: one namespace each, as tenants are deployed."""
    return [(f"bench-{index:03d}", f"t{index:03d}") for index in range(count)]


def prepare_namespaces(
    cluster: Cluster, tenants: Sequence[tuple[str, str]], deadline: float
) -> None:
    """Namespaces with the tenant's database Secret; returns once the controllers' own per-namespace
    writes (default ServiceAccount, kube-root-ca.crt) are done, so they stay out of the counts."""

    def prepare(namespace: str, name: str) -> None:
        cluster.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
        cluster.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{name}-db", "labels": {"algoedge.io/tenant": name}},
                "stringData": {"url": DATABASE_URL},
            },
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(prepare, ns, name) for ns, name in tenants]:
            future.result()
    wanted = {ns for ns, _ in tenants}

    def settled() -> bool:
        accounts = cluster.request(
            "GET", "/api/v1/serviceaccounts?fieldSelector=metadata.name=default"
        )
        roots = cluster.request(
            "GET", "/api/v1/configmaps?fieldSelector=metadata.name=kube-root-ca.crt"
        )
        with_account = {item["metadata"]["namespace"] for item in accounts["items"]}
        with_root = {item["metadata"]["namespace"] for item in roots["items"]}
        return wanted <= with_account and wanted <= with_root

    wait_for(
        "the namespaces' default ServiceAccounts and CA ConfigMaps", settled, deadline=deadline
    )


def tenant_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AlgoEdgeTenant",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example.com/algoedge:1.0.0",
            "bridgeImage": "registry.example.com/algoedge-bridge:1.0.0",
            "expectedUsers": 100,
            "database": {"secretRef": {"name": f"{name}-db"}},
        },
    }


# ---------------------------------------------------------------------------------------------
# Watching tenants


def _ready(body: Mapping[str, Any]) -> bool:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


class TenantWatch:
    """Records, per tenant, when its first status and its first Ready=True were seen (monotonic)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self.first_status: dict[tuple[str, str], float] = {}
        self.ready_at: dict[tuple[str, str], float] = {}
        #: Ready=True -> False transitions seen after a tenant was first Ready.
        self.flaps = 0
        self._currently_ready: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tenant-watch", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _observe(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        now = time.monotonic()
        with self._lock:
            if body.get("status") and key not in self.first_status:
                self.first_status[key] = now
            if _ready(body):
                self.ready_at.setdefault(key, now)
                self._currently_ready.add(key)
            elif key in self._currently_ready:
                self._currently_ready.discard(key)
                self.flaps += 1

    def ready_count(self) -> int:
        with self._lock:
            return len(self.ready_at)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._list_then_watch()
        except Exception as error:  # noqa: BLE001 - handed to the main thread, which fails the run
            self.error = error

    def _list_then_watch(self) -> None:
        listing = self._cluster.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}")
        for item in listing["items"]:
            self._observe(item)
        version = listing["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                self._cluster.custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                resource_version=version,
                timeout_seconds=5,  # short watches, so stop() is noticed promptly
            )
            try:
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(event["object"])
                        version = event["object"]["metadata"]["resourceVersion"]
                    if self._stop.is_set():
                        return
            except client.ApiException as error:
                if error.status == 410:  # the version expired: list again
                    return
                raise


# ---------------------------------------------------------------------------------------------
# The operator and its capacity endpoint


@dataclass
class CapacityServer:
    """Answers one fixed capacity report for every tenant, from its own thread and loop."""

    report: dict[str, Any]
    port: int = field(default_factory=free_port)
    requests: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url_template(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/{{namespace}}/{{name}}/internal/v1/capacity"

    async def _handle(self, _: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(self.report)

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        app = web.Application()
        app.router.add_get("/{namespace}/{name}/internal/v1/capacity", self._handle)
        runner = web.AppRunner(app, access_log=None)

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, LOOPBACK, self.port).start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="capacity-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise BenchError("the capacity server did not start within 10 s")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str
    rss_samples_kib: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:  # noqa: S310 - loopback http
            return operator_counters(response.read().decode())

    def sample_rss(self) -> None:
        while not self._stop.wait(0.5):
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.rss_samples_kib.append(rss)

    def stop(self) -> int | None:
        self._stop.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_lines(self, *markers: str) -> list[str]:
        """Lines of the operator's output holding any of ``markers`` (kopf: ``[ERROR   ]``)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if any(marker in line for marker in markers)]


def start_operator(
    *,
    kubeconfig: Path,
    capacity_url: str,
    args: argparse.Namespace,
    directory: Path,
    deadline: float,
) -> OperatorProcess:
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "ALGOEDGE_OPERATOR_CAPACITY_URL": capacity_url,
        "ALGOEDGE_OPERATOR_RESYNC_INTERVAL": str(args.resync_interval),
        "ALGOEDGE_OPERATOR_SCALE_INTERVAL": str(args.scale_interval),
        "ALGOEDGE_OPERATOR_CONCURRENCY": str(args.concurrency),
        "ALGOEDGE_OPERATOR_HTTP_HOST": LOOPBACK,
        "ALGOEDGE_OPERATOR_HTTP_PORT": str(port),
        "ALGOEDGE_OPERATOR_WATCH_CHILDREN": "false" if args.poll_children else "true",
    }
    log = directory / "operator.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(KOPF), "run", "--all-namespaces", "--standalone", "-m", "algoedge_operator"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
            preexec_fn=_die_with_parent,  # a killed benchmark takes the operator along
        )
    operator = OperatorProcess(process, log, f"http://{LOOPBACK}:{port}/metrics")

    def healthy() -> bool:
        if process.poll() is not None:
            raise BenchError(f"the operator exited with {process.returncode}:\n{tail(log)}")
        try:
            operator.metrics()
        except OSError:
            return False
        return True

    wait_for("the operator's /metrics", healthy, deadline=deadline)
    threading.Thread(target=operator.sample_rss, name="rss", daemon=True).start()
    return operator


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------
# One run


@dataclass
class RunResult:
    tenants: int
    resync_interval: float
    scale_interval: float
    creates_seconds: float
    total_seconds: float
    ready_p50: float
    ready_p95: float
    ready_max: float
    first_status_p50: float
    first_status_max: float
    converge: Traffic
    steady_resyncs: int
    steady_seconds: float
    steady: Traffic
    steady_per_resync_operator_writes: list[int]
    operator_counters_converge: dict[str, int]
    operator_counters_steady: dict[str, int]
    rss_idle_mib: float
    rss_peak_mib: float
    rss_end_mib: float
    operator_cpu_converge_s: float
    operator_cpu_steady_s: float
    apiserver_cpu_steady_s: float
    ready_flaps: int
    capacity_requests: int
    operator_problems: list[str]
    operator_warnings: list[str]
    operator_exit: int | None
    extra_nodes: int


def run_once(tenant_count: int, args: argparse.Namespace, root: Path, deadline: float) -> RunResult:
    directory = root / f"n{tenant_count}"
    directory.mkdir()
    plane = LocalControlPlane(directory / "cluster", die_with_parent=True)
    capacity = CapacityServer(
        report={
            "linked_accounts": args.linked_accounts,
            "connected_accounts": args.linked_accounts,
            "queue_backlog": {"default": args.backlog},
        }
    )
    operator: OperatorProcess | None = None
    tenant_watch: TenantWatch | None = None
    try:
        step(f"N={tenant_count}: starting the control plane in {plane.directory}")
        plane.start(timeout=max(10.0, min(180.0, deadline - time.monotonic())))
        cluster = Cluster(plane.kubeconfig)
        apiserver_pid = next(r.pid for r in plane.pid_records() if r.component == "kube-apiserver")
        apply_crd(cluster, deadline)
        nodes = add_nodes(cluster, tenant_count, deadline)
        tenants = tenant_names(tenant_count)
        step(
            f"N={tenant_count}: {len(tenants)} namespaces with database Secrets, {len(nodes)} extra nodes"
        )
        prepare_namespaces(cluster, tenants, deadline)
        capacity.start()
        operator = start_operator(
            kubeconfig=plane.kubeconfig,
            capacity_url=capacity.url_template,
            args=args,
            directory=directory,
            deadline=deadline,
        )
        time.sleep(3)  # let kopf finish its start-up listing before the baseline
        rss_idle = proc_status_kib(operator.pid, "VmRSS") or 0
        tenant_watch = TenantWatch(cluster)
        tenant_watch.start()
        counts_before = cluster.request_counts()
        operator_before = operator.metrics()
        operator_cpu_before = cpu_seconds(operator.pid)

        step(f"N={tenant_count}: creating {tenant_count} tenants at once")
        created_at: dict[tuple[str, str], float] = {}

        def create(namespace: str, name: str) -> None:
            created_at[(namespace, name)] = time.monotonic()
            cluster.request(
                "POST",
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}",
                tenant_body(name),
            )

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            for future in [pool.submit(create, ns, name) for ns, name in tenants]:
                future.result()
        creates_seconds = time.monotonic() - started

        last_report = 0.0
        while tenant_watch.ready_count() < tenant_count:
            if tenant_watch.error is not None:
                raise BenchError(f"watching tenants failed: {tenant_watch.error!r}")
            if operator.process.poll() is not None:
                raise BenchError(
                    f"the operator exited with {operator.process.returncode}:\n{tail(operator.log)}"
                )
            now = time.monotonic()
            if now > deadline:
                missing = sorted(set(tenants) - set(tenant_watch.ready_at))
                raise BenchError(
                    f"timed out {now - started:.0f} s after the first create: "
                    f"{tenant_watch.ready_count()}/{tenant_count} tenants Ready; not Ready e.g. "
                    f"{', '.join(f'{ns}/{n}' for ns, n in missing[:5])}\n"
                    f"operator log tail:\n{tail(operator.log)}"
                )
            if now - last_report >= 15:
                last_report = now
                step(
                    f"N={tenant_count}: {now - started:5.0f} s  first status "
                    f"{len(tenant_watch.first_status)}/{tenant_count}  Ready "
                    f"{tenant_watch.ready_count()}/{tenant_count}  operator RSS "
                    f"{(proc_status_kib(operator.pid, 'VmRSS') or 0) / 1024:.0f} MiB"
                )
            time.sleep(0.2)
        all_ready = time.monotonic()
        # The API server counts a request when it has finished it, which can be after the watch
        # delivered its effect: give the last status patches time to be counted here.
        time.sleep(2)
        counts_ready = cluster.request_counts()
        steady_start = time.monotonic()
        operator_ready = operator.metrics()
        operator_cpu_ready = cpu_seconds(operator.pid)

        step(
            f"N={tenant_count}: all Ready after {all_ready - started:.1f} s; "
            f"steady state for {args.steady_resyncs} x {args.resync_interval:g} s"
        )
        per_resync: list[int] = []
        apiserver_cpu_before = cpu_seconds(apiserver_pid)
        previous = counts_ready
        for _ in range(args.steady_resyncs):
            if time.monotonic() + args.resync_interval > deadline:
                raise BenchError(
                    "the deadline leaves no room for the steady-state window; raise --timeout"
                )
            time.sleep(args.resync_interval)
            current = cluster.request_counts()
            per_resync.append(Traffic.between(previous, current).writes_operator_kinds)
            previous = current
        steady_end = time.monotonic()
        apiserver_cpu_steady = cpu_seconds(apiserver_pid) - apiserver_cpu_before
        operator_end = operator.metrics()
        operator_cpu_end = cpu_seconds(operator.pid)
        rss_end = proc_status_kib(operator.pid, "VmRSS") or 0
        rss_peak = max([proc_status_kib(operator.pid, "VmHWM") or 0, *operator.rss_samples_kib])

        times = sorted(tenant_watch.ready_at[key] - created_at[key] for key in tenants)
        first = sorted(tenant_watch.first_status[key] - created_at[key] for key in tenants)
        tenant_watch.stop()
        flaps = tenant_watch.flaps
        tenant_watch = None
        exit_code = operator.stop()
        problems = operator.log_lines("Traceback", "[ERROR", "[CRITICAL")
        warnings = operator.log_lines("[WARNING")
        operator = None
        return RunResult(
            tenants=tenant_count,
            resync_interval=args.resync_interval,
            scale_interval=args.scale_interval,
            creates_seconds=creates_seconds,
            total_seconds=all_ready - started,
            ready_p50=percentile(times, 50),
            ready_p95=percentile(times, 95),
            ready_max=times[-1],
            first_status_p50=percentile(first, 50),
            first_status_max=first[-1],
            converge=Traffic.between(counts_before, counts_ready),
            steady_resyncs=args.steady_resyncs,
            steady_seconds=steady_end - steady_start,
            steady=Traffic.between(counts_ready, previous),
            steady_per_resync_operator_writes=per_resync,
            operator_counters_converge=counter_delta(operator_before, operator_ready),
            operator_counters_steady=counter_delta(operator_ready, operator_end),
            rss_idle_mib=rss_idle / 1024,
            rss_peak_mib=rss_peak / 1024,
            rss_end_mib=rss_end / 1024,
            operator_cpu_converge_s=operator_cpu_ready - operator_cpu_before,
            operator_cpu_steady_s=operator_cpu_end - operator_cpu_ready,
            apiserver_cpu_steady_s=apiserver_cpu_steady,
            ready_flaps=flaps,
            capacity_requests=capacity.requests,
            operator_problems=problems,
            operator_warnings=warnings,
            operator_exit=exit_code,
            extra_nodes=len(nodes),
        )
    finally:
        if tenant_watch is not None:
            tenant_watch.stop()
        if operator is not None:
            operator.stop()
        capacity.stop()
        step(f"N={tenant_count}: stopping the control plane")
        plane.stop()


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Report


def report(results: Sequence[RunResult], *, command: str, facts: Mapping[str, Any]) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {facts['nproc']} CPUs ({facts['cpu']}), {facts['memory_gib']} GiB, Linux "
        f"{facts['kernel']}, Python {facts['python']}; the control plane, kwok, the operator and "
        "the benchmark share those CPUs.",
        "",
        "| N | resync / scale s | creates s | all Ready s | Ready p50 / p95 / max s | first status p50 / max s | operator CPU s (converge) | RSS idle / peak / end MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.tenants} | {r.resync_interval:g} / {r.scale_interval:g} | {r.creates_seconds:.1f} "
            f"| {r.total_seconds:.1f} | {r.ready_p50:.1f} / {r.ready_p95:.1f} / {r.ready_max:.1f} "
            f"| {r.first_status_p50:.1f} / {r.first_status_max:.1f} | {r.operator_cpu_converge_s:.1f} "
            f"| {r.rss_idle_mib:.0f} / {r.rss_peak_mib:.0f} / {r.rss_end_mib:.0f} |"
        )
    lines += [
        "",
        "API server requests (`apiserver_request_total` deltas; writes = POST, PUT, PATCH, APPLY, "
        'DELETE; "operator kinds" = the resources the operator writes plus the tenant status, '
        "which includes the N tenant creates by the benchmark):",
        "",
        "| N | writes/tenant to Ready, all writers | operator kinds | operator's own count | steady window | steady writes, operator kinds (per resync) | steady writes, all writers | operator GETs/tenant/resync (GETs/s) | operator CPU % steady | apiserver CPU % steady |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        own = sum(v for k, v in r.operator_counters_converge.items() if "api_writes_total" in k)
        resyncs = r.steady_seconds / r.resync_interval
        lines.append(
            f"| {r.tenants} | {r.converge.writes_total / r.tenants:.1f} "
            f"| {r.converge.writes_operator_kinds / r.tenants:.1f} | {own / r.tenants:.1f} "
            f"| {r.steady_seconds:.0f} s | {r.steady.writes_operator_kinds} "
            f"({', '.join(map(str, r.steady_per_resync_operator_writes))}) "
            f"| {r.steady.writes_total} "
            f"| {r.steady.gets_operator_kinds / r.tenants / resyncs:.1f} "
            f"({r.steady.gets_operator_kinds / r.steady_seconds:.0f}) "
            f"| {100 * r.operator_cpu_steady_s / r.steady_seconds:.0f} "
            f"| {100 * r.apiserver_cpu_steady_s / r.steady_seconds:.0f} |"
        )
    if len(results) > 1:
        base = results[0]
        lines += ["", f"Per-tenant ratios against N={base.tenants}:", ""]
        lines.append(
            "| N | Ready p50 | Ready p95 | writes/tenant (operator kinds) | GETs/tenant/resync | RSS growth/tenant |"
        )
        lines.append("|---|---|---|---|---|---|")
        for r in results[1:]:
            lines.append(
                f"| {r.tenants} | {_ratio(r.ready_p50, base.ready_p50)} "
                f"| {_ratio(r.ready_p95, base.ready_p95)} "
                f"| {_ratio(r.converge.writes_operator_kinds / r.tenants, base.converge.writes_operator_kinds / base.tenants)} "
                f"| {_ratio(_gets(r), _gets(base))} "
                f"| {_ratio(_rss_growth(r), _rss_growth(base))} |"
            )
    for r in results:
        lines += [
            "",
            f"N={r.tenants}: writes while converging by resource (all writers): "
            + ", ".join(f"{k} {v}" for k, v in list(r.converge.writes_by_resource.items())[:14]),
            "",
            f"N={r.tenants}: steady-state writes by resource (all writers): "
            + (", ".join(f"{k} {v}" for k, v in r.steady.writes_by_resource.items()) or "none"),
            "",
            f"N={r.tenants}: steady-state GETs of operator kinds: "
            + (", ".join(f"{k} {v}" for k, v in r.steady.gets_by_resource.items()) or "none"),
            "",
            f"N={r.tenants}: operator counters while converging: "
            + ", ".join(f"`{k}` {v}" for k, v in r.operator_counters_converge.items()),
            "",
            f"N={r.tenants}: operator counters in steady state: "
            + (", ".join(f"`{k}` {v}" for k, v in r.operator_counters_steady.items()) or "none"),
            "",
            f"N={r.tenants}: {r.extra_nodes} extra kwok nodes; Ready->not Ready flaps {r.ready_flaps}; "
            f"capacity requests {r.capacity_requests}; operator exit code {r.operator_exit}; "
            f"Traceback/ERROR lines in its log: {len(r.operator_problems)}, WARNING lines: "
            f"{len(r.operator_warnings)}",
        ]
        lines += [f"    {line}" for line in (r.operator_problems + r.operator_warnings)[:5]]
    return "\n".join(lines)


def _gets(r: RunResult) -> float:
    return r.steady.gets_operator_kinds / r.tenants / (r.steady_seconds / r.resync_interval)


def _rss_growth(r: RunResult) -> float:
    return (r.rss_end_mib - r.rss_idle_mib) / r.tenants


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


# ---------------------------------------------------------------------------------------------
# CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_scale", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument(
        "--tenants",
        default="50",
        help="comma-separated tenant counts, each on a fresh control plane (default: %(default)s)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=60.0,
        help="ALGOEDGE_OPERATOR_RESYNC_INTERVAL (default: %(default)s, the operator's default)",
    )
    parser.add_argument(
        "--scale-interval",
        type=float,
        default=30.0,
        help="ALGOEDGE_OPERATOR_SCALE_INTERVAL (default: %(default)s, the operator's default)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="ALGOEDGE_OPERATOR_CONCURRENCY (default: 8)"
    )
    parser.add_argument(
        "--poll-children",
        action="store_true",
        help="ALGOEDGE_OPERATOR_WATCH_CHILDREN=false: GET every child each reconcile (the "
        "operator before its informers, as a baseline)",
    )
    parser.add_argument(
        "--steady-resyncs",
        type=int,
        default=3,
        help="resync periods to count writes for after all are Ready (default: %(default)s)",
    )
    parser.add_argument(
        "--linked-accounts",
        type=int,
        default=50,
        help="linked_accounts the capacity server reports for every tenant (default: %(default)s)",
    )
    parser.add_argument(
        "--backlog", type=int, default=10, help="queue backlog it reports (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=840.0,
        help="seconds the whole invocation may take before it fails (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    args = parser.parse_args(argv)
    try:
        args.tenant_counts = [int(part) for part in args.tenants.split(",")]
    except ValueError:
        parser.error("--tenants must be comma-separated integers, e.g. 50,200")
    if any(n < 1 for n in args.tenant_counts):
        parser.error("--tenants must all be at least 1")
    if args.steady_resyncs < 1:
        parser.error("--steady-resyncs must be at least 1")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.operator_scale", *(argv or sys.argv[1:])])
    deadline = time.monotonic() + args.timeout
    facts = machine_facts()
    results: list[RunResult] = []
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="algoedge-operator-scale-") as root:
            for count in args.tenant_counts:
                results.append(run_once(count, args, Path(root), deadline))
    except BenchError as error:
        print(f"operator_scale: {error}", file=sys.stderr)
        if results:
            print(report(results, command=command, facts=facts))
        return 1
    except KeyboardInterrupt:
        print("operator_scale: interrupted", file=sys.stderr)
        return 130
    print(report(results, command=command, facts=facts))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"command": command, "machine": facts, "runs": [asdict(r) for r in results]},
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
