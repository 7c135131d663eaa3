"""`make dev`: Postgres, Redis and pgBouncer in .run/, migrations, the API, a Celery worker and beat,
an SMTP sink writing each e-mail to .run/mail/, then the local control plane with the operator
and one tenant; Ctrl-C stops it all.

Data and generated secrets persist in the folder between runs, so a second `make dev` finds the
same users. The variables the API got are written to ``<dir>/env`` so a shell can
``source .run/env`` and run ``algoedge`` commands against the same services.

The cluster part (skip it with ``--no-cluster``): a fresh local control plane in
``<dir>/cluster`` (devtools/controlplane), the CRD, and the operator as a process
(``kopf run --all-namespaces --standalone -m algoedge_operator``, log in ``<dir>/operator.log``).
It reconciles tenant ``dev/dev``, whose internal Secret holds this API's tokens, and its
capacity URL is this API's ``/internal/v1/capacity``: accounts linked through the API scale the
tenant's bridge StatefulSet (2 accounts per replica), as in a real deployment.

With ``--real-node`` (`make dev REAL_NODE=1`) the tenant's pods really run, on the local real
node (devtools/controlplane/realnode.py) instead of kwok: the images ``images/build.sh`` builds
from this tree (pull policy Never), Postgres also on the node's gateway address for them (the
same database the API here uses), no bridge pods (they could not reach the MetaAPI simulator on
loopback). What happens to the tenant's pods is printed as it happens, and the address of the
tenant's API Service once the operator has made it. One real node per host: it refuses to start
while another runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from types import FrameType

from cryptography.fernet import Fernet

from devtools.bridge import bridge_environment
from devtools.controlplane import realnode
from devtools.controlplane.cluster import ApiServer, ClusterError, LocalControlPlane
from devtools.monitoring import tools as monitoring_tools
from devtools.monitoring.local import LocalMonitoring, MonitoringError
from devtools.pod_events import JsonObject, NamespaceWatch
from devtools.services import (
    LOOPBACK,
    PgBouncer,
    PostgresServer,
    RedisServer,
    ServiceError,
    free_port,
    wait_healthy,
)
from devtools.smtp import SmtpSink

REPO = Path(__file__).resolve().parents[1]
KOPF = Path(sys.executable).with_name("kopf")
#: The simulator runs in the bridge's environment (python-socketio 4, like the SDK).
METAAPI_SIM = REPO / ".venv-bridge" / "bin" / "algoedge-metaapi-sim"
#: `algoedge bridge` runs in the same environment (the SDK).
BRIDGE_ALGOEDGE = REPO / ".venv-bridge" / "bin" / "algoedge"
#: Seconds between two looks at the tenant's namespace (what changed is printed, nothing else).
WATCH_INTERVAL_SECONDS = 1.0


def dev_tenant(*, real_node: bool) -> dict[str, object]:
    """The tenant `make dev` runs: small. On kwok, a bridge replica per 2 linked accounts so that
    linking a few accounts through the API shows the operator scaling. On the real node, the
    images built here and no bridge (no MetaAPI token referenced: no bridge pods)."""
    spec: dict[str, object] = {
        "image": "registry.example.com/algoedge:dev",
        "bridgeImage": "registry.example.com/algoedge-bridge:dev",
        "expectedUsers": 100,
        "database": {"secretRef": {"name": "dev-db"}},
        "api": {"minReplicas": 1, "maxReplicas": 2},
        "bridge": {
            "accountsPerReplica": 2,
            "minReplicas": 1,
            "maxReplicas": 5,
            "scaleDownStabilizationSeconds": 30,
            "metaapi": {"tokenSecretRef": {"name": "dev-metaapi"}},
        },
    }
    if real_node:
        spec.update(
            image=realnode.APP_IMAGE, bridgeImage=realnode.BRIDGE_IMAGE, imagePullPolicy="Never"
        )
        del spec["bridge"]
    return {
        "apiVersion": "algoedge.io/v1alpha1",
        "kind": "AlgoEdgeTenant",
        "metadata": {"name": "dev", "namespace": "dev"},
        "spec": spec,
    }


# Stable ports when they are free, so bookmarks and `psql` history keep working between runs.
PREFERRED_PORTS = {
    "postgres": 55432,
    "pgbouncer": 56432,
    "redis": 56379,
    "api": 8080,
    "api_metrics": 9090,
    "smtp": 2525,
    "worker_metrics": 9091,
    "beat_metrics": 9092,
    "metaapi_sim": 8091,
    "bridge_metrics": 9093,
    "prometheus": 9095,
}


def _secrets(folder: Path) -> dict[str, str]:
    """Passwords and keys made on the first run and reused after (the data outlives a run)."""
    path = folder / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    makers: dict[str, Callable[[], str]] = {
        "postgres": lambda: secrets.token_urlsafe(16),
        "postgres_superuser": lambda: secrets.token_urlsafe(16),
        "redis": lambda: secrets.token_urlsafe(16),
        "jwt": lambda: secrets.token_urlsafe(32),
        "internal": lambda: secrets.token_urlsafe(24),
        "credentials": lambda: Fernet.generate_key().decode(),
        # JWT-shaped, as the SDK checks: the token the simulator accepts.
        "metaapi_token": lambda: ".".join(secrets.token_urlsafe(n) for n in (12, 24, 16)),
        "metaapi_admin_token": lambda: secrets.token_urlsafe(24),
    }
    # Keys added by newer versions of this script are made now; existing ones are kept.
    made = {name: stored.get(name) or make() for name, make in makers.items()}
    if made != stored:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(made, indent=2))
        path.chmod(0o600)
    return made


def _announce_mail(message: EmailMessage, path: Path | None) -> None:
    print(f"mail: to {message['To']}: {message['Subject']}  ({path})", flush=True)


class DevCluster:
    """The local control plane, the CRD, tenant ``dev/dev`` and the operator, for one `make dev`;
    with ``real_node``, the tenant's pods on the real node."""

    def __init__(self, root: Path, *, real_node: bool) -> None:
        self.real_node = real_node
        # Said explicitly: left to the directory's marker, a `make cluster-up REAL_NODE=1` in
        # .run/cluster would bring the real node into the next `make dev`.
        self.plane = LocalControlPlane(root / "cluster", real_node=real_node)
        self.operator_log = root / "operator.log"
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.watch = NamespaceWatch(api_service="dev-api")
        self._api: ApiServer | None = None
        self._watch_error: str | None = None

    def host_taken(self) -> str | None:
        """Why the real node cannot start here (another one runs on this host), if it cannot."""
        return self.plane.node.host_taken() if self.real_node else None

    def start_plane(self) -> None:
        """The control plane (and the real node: its bridge address is where Postgres must also
        listen, so this comes before the services)."""
        self.plane.start(timeout=600 if self.real_node else 120)

    def kubectl(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [str(self.plane.binary("kubectl")), f"--kubeconfig={self.plane.kubeconfig}", *args],
            input=stdin.encode() if stdin is not None else None,
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def start(
        self,
        *,
        api_metrics_port: int,
        api_env: dict[str, str],
        database_url: str,
        metaapi_token: str,
    ) -> None:
        """The CRD, namespace ``dev`` and its Secrets, the tenant, then the operator."""
        self.kubectl("apply", "--server-side", f"--filename={REPO / 'crds'}")
        self.kubectl(
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "customresourcedefinition/algoedgetenants.algoedge.io",
        )
        self.kubectl("create", "namespace", "dev")
        if self.real_node:
            # Every pod of the namespace on the real node (the apiserver's admission plugins).
            annotations = realnode.namespace_annotations()
            self.kubectl(
                "annotate", "namespace", "dev", *(f"{k}={v}" for k, v in annotations.items())
            )
        self.kubectl(
            "--namespace=dev",
            "create",
            "secret",
            "generic",
            "dev-db",
            f"--from-literal=url={database_url}",
        )
        # The operator generates this Secret only when it is missing; made beforehand with the
        # dev API's own values (so that API authorises its capacity reads), it is adopted only
        # with the annotation naming the tenant (docs/operator.md, "Names it does not own").
        internal = [
            f"--from-literal={key}={api_env[key]}"
            for key in (
                "ALGOEDGE_INTERNAL_TOKEN",
                "ALGOEDGE_JWT_SECRET",
                "ALGOEDGE_CREDENTIALS_KEY",
            )
        ]
        self.kubectl("--namespace=dev", "create", "secret", "generic", "dev-internal", *internal)
        self.kubectl(
            "--namespace=dev", "annotate", "secret", "dev-internal", "algoedge.io/adopt=dev"
        )
        # The simulator's token: the bridge runs no pods until the tenant references one (on
        # the real node it does not: the simulator listens on loopback, out of the pods' reach).
        self.kubectl(
            "--namespace=dev",
            "create",
            "secret",
            "generic",
            "dev-metaapi",
            f"--from-literal=token={metaapi_token}",
        )
        # The Secrets the tenant references must be labelled for it (docs/operator.md).
        self.kubectl(
            "--namespace=dev", "label", "secret", "dev-db", "dev-metaapi", "algoedge.io/tenant=dev"
        )
        tenant = dev_tenant(real_node=self.real_node)
        self.kubectl("apply", "--filename=-", stdin=json.dumps(tenant))
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.plane.kubeconfig),
            # The API's metrics listener, where /internal/v1/* is served.
            "ALGOEDGE_OPERATOR_CAPACITY_URL": (
                f"http://{LOOPBACK}:{api_metrics_port}/internal/v1/capacity"
            ),
            # Every 5 s on kwok, so linking accounts shows the bridge scaling at once; on the real
            # node (no bridge) the default 30 s: each read is an access-log line of the API here,
            # between the lines about the pods.
            "ALGOEDGE_OPERATOR_SCALE_INTERVAL": "30" if self.real_node else "5",
            "ALGOEDGE_OPERATOR_RESYNC_INTERVAL": "30",
            "ALGOEDGE_OPERATOR_HTTP_HOST": LOOPBACK,
            "ALGOEDGE_OPERATOR_HTTP_PORT": str(self.metrics_port),
        }
        if self.real_node:
            # The tenant's Redis and pgBouncer from the images built here, not a registry's.
            env["ALGOEDGE_OPERATOR_REDIS_IMAGE"] = realnode.REDIS_IMAGE
            env["ALGOEDGE_OPERATOR_PGBOUNCER_IMAGE"] = realnode.PGBOUNCER_IMAGE
        with self.operator_log.open("ab") as log:
            self.operator = subprocess.Popen(
                [str(KOPF), "run", "--all-namespaces", "--standalone", "-m", "algoedge_operator"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def describe(self, *, postgres_port: int) -> str:
        kubectl = self.plane.binary("kubectl")
        lines = [
            "Local control plane, operator and tenant dev/dev:",
            f"  export KUBECONFIG={self.plane.kubeconfig} PATH={kubectl.parent}:$PATH",
            "  kubectl get aet -n dev     # Ready; the bridge follows the accounts linked via the API",
            f"  operator    log {self.operator_log}, "
            f"metrics http://{LOOPBACK}:{self.metrics_port}/metrics",
        ]
        if self.real_node:
            lines[2] = "  kubectl get aet,pods -n dev   # real pods, on node " + realnode.NODE_NAME
            lines += [
                f"  real node   {realnode.NODE_NAME}: images {realnode.APP_IMAGE} (api, worker, beat, "
                "migrate), built from this tree by images/build.sh; no bridge pods",
                f"  PostgreSQL  also on {realnode.GATEWAY}:{postgres_port} for the pods (the same "
                "database as the API above: the same users)",
                "  Below: the tenant's pods, Warning events and its API's address as they change.",
            ]
        return "\n".join(lines) + "\n"

    def poll(self) -> list[str]:
        """What changed in namespace ``dev`` since the last call (lines to print)."""
        if self._api is None:
            endpoints = self.plane.endpoints()
            if endpoints is None:
                return []
            self._api = ApiServer(port=endpoints.apiserver, pki=self.plane.pki)
        lists: dict[str, list[JsonObject]] = {}
        paths = {
            "pods": "/api/v1/namespaces/dev/pods",
            "events": "/api/v1/namespaces/dev/events",
            "tenants": "/apis/algoedge.io/v1alpha1/namespaces/dev/algoedgetenants",
            "services": "/api/v1/namespaces/dev/services",
        }
        try:
            for kind, path in paths.items():
                status, body = self._api.request("GET", path)
                if status != 200:
                    raise OSError(f"GET {path}: HTTP {status}")
                lists[kind] = body.get("items", [])
        except (OSError, http.client.HTTPException) as error:
            # Said once, not at every poll; the next good answer clears it.
            message = f"cannot list namespace dev: {error}"
            if message == self._watch_error:
                return []
            self._watch_error = message
            return [message]
        self._watch_error = None
        return self.watch.changes(**lists)

    def problem(self) -> str | None:
        """Why the cluster part stopped working, if it did (the operator exited)."""
        if self.operator is not None and self.operator.poll() is not None:
            return f"the operator exited with {self.operator.returncode}; see {self.operator_log}"
        return None

    def stop(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.plane.stop()


def _start_monitoring(
    monitoring: LocalMonitoring,
    *,
    redis: RedisServer,
    bouncer: PgBouncer,
    targets: dict[str, str],
) -> str:
    """The exporters and a Prometheus with tenant dev/dev's rules when `make monitoring-tools`
    has built them; the line `make dev` prints about it either way."""
    try:
        monitoring.start_exporters(redis=redis, bouncer=bouncer)
        url = monitoring.start_prometheus(
            targets, port=free_port(PREFERRED_PORTS["prometheus"]), namespace="dev", tenant="dev"
        )
    except monitoring_tools.ToolsMissing as exc:
        monitoring.stop()
        first = str(exc).splitlines()[0]
        return f"  Prometheus  not started ({first})\n"
    return (
        f"  Prometheus  {url}  (HTTP API only, e.g. {url}/api/v1/alerts and /api/v1/targets: "
        "built without its web UI's assets; tenant dev/dev's rules; docs/monitoring.md)\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.dev", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run"), help="state folder")
    parser.add_argument(
        "--no-cluster",
        action="store_true",
        help="only the services and the API: no control plane, operator or tenant",
    )
    parser.add_argument(
        "--real-node",
        action="store_true",
        help="the tenant's pods on the local real node (containerd, kubelet) instead of kwok: "
        "the images built from this tree, really running (`make dev REAL_NODE=1`)",
    )
    args = parser.parse_args(argv)
    if args.real_node and args.no_cluster:
        parser.error("--real-node runs the tenant in the cluster: drop --no-cluster")
    root: Path = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # postgres and pgbouncer run as the postgres user when we are root
    keys = _secrets(root)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    postgres = PostgresServer(
        root=root / "postgres",
        port=free_port(PREFERRED_PORTS["postgres"]),
        password=keys["postgres"],
        superuser_password=keys["postgres_superuser"],
        # The real node's pods reach the host on the node's bridge gateway, not on loopback.
        listen_also=(realnode.GATEWAY,) if args.real_node else (),
        clients_also=(realnode.POD_CIDR,) if args.real_node else (),
    )
    redis = RedisServer(
        root=root / "redis", port=free_port(PREFERRED_PORTS["redis"]), password=keys["redis"]
    )
    bouncer = PgBouncer(
        root=root / "pgbouncer", upstream=postgres, port=free_port(PREFERRED_PORTS["pgbouncer"])
    )
    api: subprocess.Popen[bytes] | None = None
    jobs: dict[str, subprocess.Popen[bytes]] = {}
    mail = SmtpSink(
        folder=root / "mail", port=free_port(PREFERRED_PORTS["smtp"]), on_message=_announce_mail
    )
    cluster = None if args.no_cluster else DevCluster(root, real_node=args.real_node)
    if cluster is not None and (taken := cluster.host_taken()) is not None:
        print(f"dev: {taken}", file=sys.stderr)
        return 1
    monitoring = LocalMonitoring(root / "monitoring", scrape_seconds=5)
    try:
        if cluster is not None:
            cluster.start_plane()
        postgres.start()
        redis.start()
        bouncer.start()
        api_port = free_port(PREFERRED_PORTS["api"])
        api_metrics_port = free_port(PREFERRED_PORTS["api_metrics"])
        jobs_ports: dict[str, int] = {}
        env = {
            "ALGOEDGE_DATABASE_URL": bouncer.url,
            "ALGOEDGE_REDIS_URL": redis.url,
            "ALGOEDGE_JWT_SECRET": keys["jwt"],
            "ALGOEDGE_INTERNAL_TOKEN": keys["internal"],
            "ALGOEDGE_CREDENTIALS_KEY": keys["credentials"],
            "ALGOEDGE_HTTP_HOST": LOOPBACK,
            "ALGOEDGE_HTTP_PORT": str(api_port),
            "ALGOEDGE_METRICS_PORT": str(api_metrics_port),
        }
        env_file = root / "env"
        env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        env_file.chmod(0o600)
        algoedge = str(Path(sys.executable).with_name("algoedge"))
        child_env = {**os.environ, **env}
        subprocess.run([algoedge, "migrate"], env=child_env, check=True)
        # Its own session: Ctrl-C reaches only us, and we stop the API with SIGTERM like a kubelet.
        api = subprocess.Popen([algoedge, "api"], env=child_env, start_new_session=True)
        wait_healthy(f"http://{LOOPBACK}:{api_port}/readyz", api)
        mail.start()
        jobs_env = {
            **child_env,
            "ALGOEDGE_SMTP_URL": mail.url,
            "ALGOEDGE_MAIL_FROM": "AlgoEdge dev <reports@algoedge.localhost>",
        }
        for command in ("worker", "beat"):
            port = free_port(PREFERRED_PORTS[f"{command}_metrics"])
            log = (root / f"{command}.log").open("ab")
            jobs[command] = subprocess.Popen(
                [algoedge, command],
                env={
                    **jobs_env,
                    "ALGOEDGE_METRICS_PORT": str(port),
                    "ALGOEDGE_HEARTBEAT_FILE": str(root / f"{command}.heartbeat"),
                },
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()
            jobs_ports[command] = port
        sim_port = free_port(PREFERRED_PORTS["metaapi_sim"])
        sim_log = (root / "metaapi-sim.log").open("ab")
        jobs["metaapi-sim"] = subprocess.Popen(
            [str(METAAPI_SIM)],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("ALGOEDGE_")},
                "ALGOEDGE_SIM_HOST": LOOPBACK,
                "ALGOEDGE_SIM_PORT": str(sim_port),
                "ALGOEDGE_SIM_TOKEN": keys["metaapi_token"],
                "ALGOEDGE_SIM_ADMIN_TOKEN": keys["metaapi_admin_token"],
                # Accounts trade on their own every ~20 s, so streams carry live traffic.
                "ALGOEDGE_SIM_STRATEGY_SECONDS": "20",
            },
            stdout=sim_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sim_log.close()
        wait_healthy(
            f"http://{LOOPBACK}:{sim_port}/healthz",
            jobs["metaapi-sim"],
            log=root / "metaapi-sim.log",
        )
        # One bridge replica (in the bridge's environment) connects linked accounts to the simulator.
        bridge_port = free_port(PREFERRED_PORTS["bridge_metrics"])
        bridge_dir = root / "bridge"
        bridge_dir.mkdir(exist_ok=True)  # the SDK writes ./.metaapi here
        bridge_log = (root / "bridge.log").open("ab")
        jobs["bridge"] = subprocess.Popen(
            [str(BRIDGE_ALGOEDGE), "bridge"],
            env={
                **child_env,
                **bridge_environment(
                    database_url=bouncer.url,
                    redis_url=redis.url,
                    credentials_key=keys["credentials"],
                    metaapi_url=f"http://{LOOPBACK}:{sim_port}",
                    metaapi_token=keys["metaapi_token"],
                    pod_name="dev-bridge-0",
                    metrics_port=bridge_port,
                ),
            },
            cwd=bridge_dir,
            stdout=bridge_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        bridge_log.close()
        wait_healthy(
            f"http://{LOOPBACK}:{bridge_port}/readyz", jobs["bridge"], log=root / "bridge.log"
        )
        monitoring_line = _start_monitoring(
            monitoring,
            redis=redis,
            bouncer=bouncer,
            targets={
                "api": f"{LOOPBACK}:{api_metrics_port}",
                "worker": f"{LOOPBACK}:{jobs_ports['worker']}",
                "beat": f"{LOOPBACK}:{jobs_ports['beat']}",
                "bridge": f"{LOOPBACK}:{bridge_port}",
            },
        )
        if cluster is not None:
            cluster.start(
                api_metrics_port=api_metrics_port,
                api_env=env,
                # No TLS on this Postgres; pgBouncer is told so rather than left to try.
                database_url=(
                    f"{postgres.url_at(realnode.GATEWAY)}?sslmode=disable"
                    if args.real_node
                    else postgres.url
                ),
                metaapi_token=keys["metaapi_token"],
            )
        print(
            "\nAlgoEdge dev stack is up (Ctrl-C stops everything):\n"
            f"  API         http://{LOOPBACK}:{api_port}  (/api/v1/openapi.json; /metrics and "
            f"/internal/v1/* on http://{LOOPBACK}:{api_metrics_port})\n"
            f"  pgBouncer   {LOOPBACK}:{bouncer.port}  (transaction pooling; the API uses it)\n"
            f"  PostgreSQL  {LOOPBACK}:{postgres.port}  (logs: {postgres.log_file})\n"
            f"  Redis       {LOOPBACK}:{redis.port}\n"
            f"  worker      log {root / 'worker.log'}  metrics http://{LOOPBACK}:{jobs_ports['worker']}/metrics\n"
            f"  beat        daily reports 00:15 UTC, weekly Mondays  log {root / 'beat.log'}  "
            f"metrics http://{LOOPBACK}:{jobs_ports['beat']}/metrics\n"
            f"  mail        {mail.url} -> {mail.folder}/ (one .eml per message)\n"
            f"  MetaAPI     http://{LOOPBACK}:{sim_port}  (simulator; token in {root / 'secrets.json'} "
            f"as metaapi_token / metaapi_admin_token; faults: docs/metaapi-sim.md)\n"
            f"  bridge      http://{LOOPBACK}:{bridge_port}/metrics  (dev-bridge-0, log {root / 'bridge.log'};"
            f" a newly linked account connects in about 15 s)\n"
            f"{monitoring_line}"
            f"  variables   source {env_file}\n",
            flush=True,
        )
        if cluster is not None:
            print(cluster.describe(postgres_port=postgres.port), flush=True)
        watched = 0.0
        while not stop.wait(0.5):
            if cluster is not None and time.monotonic() - watched >= WATCH_INTERVAL_SECONDS:
                watched = time.monotonic()
                for line in cluster.poll():
                    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
            if api.poll() is not None:
                print(f"dev: the API exited with {api.returncode}", file=sys.stderr)
                return 1
            for command, process in jobs.items():
                if process.poll() is not None:
                    print(
                        f"dev: the {command} exited with {process.returncode}; "
                        f"see {root / (command + '.log')}",
                        file=sys.stderr,
                    )
                    return 1
            if (problem := monitoring.problem()) is not None:
                print(f"dev: {problem}", file=sys.stderr)
                return 1
            if cluster is not None and (problem := cluster.problem()) is not None:
                print(f"dev: {problem}", file=sys.stderr)
                return 1
        return 0
    except (subprocess.CalledProcessError, ClusterError, ServiceError, MonitoringError) as exc:
        print(f"dev: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        monitoring.stop()
        for process in [*jobs.values(), *([api] if api is not None else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [*jobs.values(), *([api] if api is not None else [])]:
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        mail.stop()
        bouncer.stop()
        redis.stop()
        postgres.stop()
        stopped = "operator, control plane, " if cluster is not None else ""
        if cluster is not None and cluster.real_node:
            stopped = "operator, control plane and real node (its pods, bridge, iptables chains), "
        print(
            f"dev: stopped {stopped}API, worker, beat, bridge, MetaAPI simulator, mail, pgBouncer, Redis "
            "and PostgreSQL",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
