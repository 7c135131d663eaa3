"""The kind path: a kind cluster with the three images built and loaded, the CRDs, the operator
and a sample tenant with a throw-away PostgreSQL, where the pods really run (make kind-up).

    python -m devtools.kind up                  # everything; then `kubectl get aet -A`
    python -m devtools.kind up --cluster-only   # the cluster and PostgreSQL only: for `tilt up`
    python -m devtools.kind down

It needs a Docker engine, `docker` and `kind` (https://kind.sigs.k8s.io). Without a Docker engine
it stops at once saying so (exit code 3, the one tests/e2e/test_kind.py turns into a skip); any
other problem (an engine that answers badly, a missing tool, a failing step) is an error (exit
code 1) naming it. The images are built with `docker build` from images/Dockerfile, one target
each; the plan (:func:`up_steps`) is a pure list of commands, checked by tests/unit/test_kind.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "algoedge"
CONTEXT = f"kind-{CLUSTER}"
TAG = "dev"
#: Image name -> images/Dockerfile target.
IMAGES = {"algoedge": "app", "algoedge-bridge": "bridge", "algoedge-operator": "operator"}
OPERATOR_NAMESPACE = "algoedge-system"
TENANT = "acme"
TENANT_NAMESPACE = "trading"
POSTGRES_MANIFEST = REPO / "k8s" / "kind" / "postgres.yaml"
#: What the sample tenant's database Secret holds; the Tiltfile's default --database-url.
DATABASE_URL = f"postgresql://acme:acme@postgres.{TENANT_NAMESPACE}.svc:5432/acme"
#: Exit code for "no Docker engine here": a reason to skip, not a failure.
NO_DOCKER = 3


@dataclass(frozen=True)
class DockerState:
    """What answers on the Docker socket: nothing at all (``absent``: the kind path cannot run
    here, a reason to skip) or an engine with a ``problem`` (a failure), or a running engine."""

    absent: str | None = None
    problem: str | None = None

    @property
    def running(self) -> bool:
        return self.absent is None and self.problem is None


def probe_docker(host: str | None) -> DockerState:
    """Ask the engine at ``host`` (``$DOCKER_HOST``; None: the default socket) for ``/_ping``."""
    host = host or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return DockerState(problem=f"DOCKER_HOST={host}: only a local unix socket is supported")
    path = host.removeprefix("unix://")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
    except (FileNotFoundError, ConnectionRefusedError) as error:
        return DockerState(absent=f"no Docker engine answers on {path} ({error.strerror})")
    except OSError as error:
        return DockerState(problem=f"the Docker socket {path} cannot be used: {error}")
    if not reply.startswith(b"HTTP/") or b" 200 " not in reply.split(b"\r\n", 1)[0]:
        return DockerState(problem=f"the Docker engine on {path} answered {reply!r} to /_ping")
    return DockerState()


class NoDocker(Exception):
    """No Docker engine here: the kind path cannot run (skip, do not fail)."""


class KindPathBroken(Exception):
    """Docker is here but something else is wrong: a failure, with what to do."""


def check_prerequisites(docker: DockerState, which: Callable[[str], str | None]) -> None:
    """Raise :class:`NoDocker` or :class:`KindPathBroken`; return when the path can run."""
    if docker.absent is not None:
        raise NoDocker(docker.absent)
    if docker.problem is not None:
        raise KindPathBroken(docker.problem)
    for tool, how in (("docker", "the Docker CLI"), ("kind", "https://kind.sigs.k8s.io")):
        if which(tool) is None:
            raise KindPathBroken(f"{tool} is not on PATH (install it: {how})")


def image(name: str) -> str:
    return f"{name}:{TAG}"


def up_steps(*, helm: str, kubectl: str, cluster_only: bool) -> list[list[str]]:
    """The commands of `make kind-up`, in order (pure)."""
    context = ["--kube-context", CONTEXT]
    ctl = [kubectl, "--context", CONTEXT]
    steps: list[list[str]] = [
        ["kind", "create", "cluster", "--name", CLUSTER, "--wait", "120s"],
        [*ctl, "create", "namespace", TENANT_NAMESPACE],
        [*ctl, "apply", "--namespace", TENANT_NAMESPACE, "-f", str(POSTGRES_MANIFEST)],
        [*ctl, "rollout", "status", "--namespace", TENANT_NAMESPACE, "deployment/postgres",
         "--timeout=300s"],
    ]  # fmt: skip
    if cluster_only:
        return steps
    for name, target in IMAGES.items():
        steps.append(
            ["docker", "build", "-f", str(REPO / "images" / "Dockerfile"), "--target", target,
             "-t", image(name), str(REPO)]
        )  # fmt: skip
    steps.append(["kind", "load", "docker-image", "--name", CLUSTER, *map(image, IMAGES)])
    charts = REPO / "charts"
    steps += [
        [helm, "upgrade", "--install", "algoedge-crds", str(charts / "algoedge-crds"), *context,
         "--wait"],
        [helm, "upgrade", "--install", "algoedge-operator", str(charts / "algoedge-operator"),
         *context, "--namespace", OPERATOR_NAMESPACE, "--create-namespace", "--wait",
         "--set", "image.repository=algoedge-operator", "--set", f"image.tag={TAG}",
         "--set", "image.pullPolicy=Never"],
        [helm, "upgrade", "--install", TENANT, str(charts / "algoedge-tenant"), *context,
         "--namespace", TENANT_NAMESPACE,
         "--set", "image.repository=algoedge", "--set", f"image.tag={TAG}",
         "--set", "bridgeImage.repository=algoedge-bridge", "--set", f"bridgeImage.tag={TAG}",
         "--set", "spec.imagePullPolicy=Never", "--set-string", f"database.url={DATABASE_URL}"],
        [*ctl, "wait", "--namespace", TENANT_NAMESPACE, "--for=condition=Ready",
         f"algoedgetenant/{TENANT}", "--timeout=600s"],
    ]  # fmt: skip
    return steps


def project_tools() -> tuple[str, str]:
    """helm and kubectl of the project's control-plane build (make controlplane)."""
    built = subprocess.run(
        ["bash", str(REPO / "devtools" / "controlplane" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        raise KindPathBroken(f"devtools/controlplane/build.sh failed: {built.stderr.strip()}")
    bin_dir = Path(built.stdout.strip().splitlines()[-1])
    return str(bin_dir / "helm"), str(bin_dir / "kubectl")


def _cluster_exists() -> bool:
    listed = subprocess.run(
        ["kind", "get", "clusters"], capture_output=True, text=True, check=False
    )
    return CLUSTER in listed.stdout.split()


def up(*, cluster_only: bool) -> None:
    check_prerequisites(probe_docker(os.environ.get("DOCKER_HOST")), shutil.which)
    helm, kubectl = project_tools()
    steps = up_steps(helm=helm, kubectl=kubectl, cluster_only=cluster_only)
    if _cluster_exists():
        steps = steps[1:]
    for step in steps:
        print("kind-up:", " ".join(step), flush=True)
        done = subprocess.run(step, check=False)
        already = step[-2:] == ["namespace", TENANT_NAMESPACE] and done.returncode != 0
        if done.returncode != 0 and not already:
            raise KindPathBroken(f"`{' '.join(step)}` exited {done.returncode}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.kind", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--cluster-only", action="store_true", help="cluster and PostgreSQL only")
    args = parser.parse_args(argv)
    try:
        if args.action == "down":
            subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=True)
            return 0
        up(cluster_only=args.cluster_only)
    except NoDocker as reason:
        print(
            f"kind-up: cannot run here: {reason}; the kind path needs a Docker engine",
            file=sys.stderr,
        )
        return NO_DOCKER
    except (KindPathBroken, subprocess.CalledProcessError) as error:
        print(f"kind-up: {error}", file=sys.stderr)
        return 1
    print(
        f"kind-up: done. kubectl --context {CONTEXT} get aet -A"
        + ("; now: tilt up" if args.cluster_only else f"; helm test {TENANT} -n {TENANT_NAMESPACE}")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
