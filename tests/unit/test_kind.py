"""The kind path's decisions (devtools/kind.py): skip only where no Docker engine answers, fail
on anything else; and its plan: every image built from a Dockerfile target and loaded, the charts
installed with those images, the sample database the one the Tiltfile expects."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.kind import (
    DATABASE_URL,
    IMAGES,
    POSTGRES_MANIFEST,
    REPO,
    DockerState,
    KindPathBroken,
    NoDocker,
    check_prerequisites,
    image,
    probe_docker,
    up_steps,
)
from devtools.tilt import run_tiltfile
from tests.unit.charts.support import find_helm
from tests.unit.test_images import STAGES


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kind-") as directory:
        yield Path(directory)


def serve_once_forever(path: Path, reply: bytes) -> threading.Thread:
    """A unix-socket server answering every connection with ``reply`` (a fake engine's HTTP)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        with server:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    connection.recv(1024)
                    connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


class TestProbeDocker:
    def test_should_call_a_missing_socket_absent(self, short_tmp: Path) -> None:
        state = probe_docker(f"unix://{short_tmp}/docker.sock")
        assert state.absent is not None
        assert "no Docker engine answers" in state.absent
        assert state.problem is None

    def test_should_call_a_socket_nobody_listens_on_absent(self, short_tmp: Path) -> None:
        path = short_tmp / "docker.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
            stale.bind(str(path))  # bound, never listening: connection refused
            assert probe_docker(f"unix://{path}").absent is not None

    def test_should_call_an_engine_that_answers_ok_running(self, short_tmp: Path) -> None:
        path = short_tmp / "docker.sock"
        serve_once_forever(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        assert probe_docker(f"unix://{path}").running

    def test_should_call_an_engine_that_answers_badly_a_problem(self, short_tmp: Path) -> None:
        path = short_tmp / "docker.sock"
        serve_once_forever(path, b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
        state = probe_docker(f"unix://{path}")
        assert state.absent is None
        assert state.problem is not None
        assert "answered" in state.problem

    def test_should_call_a_remote_engine_a_problem(self) -> None:
        state = probe_docker("tcp://127.0.0.1:2375")
        assert state.problem is not None
        assert "only a local unix socket" in state.problem


class TestPrerequisites:
    def test_should_skip_without_docker(self) -> None:
        with pytest.raises(NoDocker, match="nothing here"):
            check_prerequisites(DockerState(absent="nothing here"), lambda tool: f"/bin/{tool}")

    def test_should_fail_with_a_broken_engine(self) -> None:
        with pytest.raises(KindPathBroken, match="answered"):
            check_prerequisites(DockerState(problem="answered 500"), lambda tool: f"/bin/{tool}")

    def test_should_fail_without_kind_where_docker_runs(self) -> None:
        def which(tool: str) -> str | None:
            return None if tool == "kind" else f"/bin/{tool}"

        with pytest.raises(KindPathBroken, match="kind is not on PATH"):
            check_prerequisites(DockerState(), which)

    def test_should_pass_with_everything(self) -> None:
        check_prerequisites(DockerState(), lambda tool: f"/bin/{tool}")


def run_kind_test(docker_host: str) -> subprocess.CompletedProcess[str]:
    """tests/e2e/test_kind.py in a child pytest, as `make test` runs it."""
    env = {**os.environ, "DOCKER_HOST": docker_host}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests/e2e/test_kind.py", "-q", "-rsf", "-p",
         "no:cacheprovider"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


class TestTheKindTestDecides:
    def test_should_be_skipped_saying_no_docker_where_none_answers(self, short_tmp: Path) -> None:
        result = run_kind_test(f"unix://{short_tmp}/docker.sock")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 skipped" in result.stdout
        assert "kind path: no Docker engine answers on" in result.stdout

    def test_should_fail_loudly_when_the_engine_answers_badly(self, short_tmp: Path) -> None:
        path = short_tmp / "docker.sock"
        serve_once_forever(path, b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
        result = run_kind_test(f"unix://{path}")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "kind path: the Docker engine on" in result.stdout
        assert "skipped" not in result.stdout


class TestThePlan:
    STEPS = up_steps(helm="helm", kubectl="kubectl", cluster_only=False)

    def test_should_build_each_image_from_a_target_of_the_dockerfile(self) -> None:
        builds = [s for s in self.STEPS if s[:2] == ["docker", "build"]]
        targets = {s[s.index("--target") + 1]: s[s.index("-t") + 1] for s in builds}
        assert set(targets) <= set(STAGES)
        assert targets == {target: image(name) for name, target in IMAGES.items()}

    def test_should_load_every_image_it_built_and_deploy_only_those(self) -> None:
        (load,) = [s for s in self.STEPS if s[:3] == ["kind", "load", "docker-image"]]
        loaded = set(load[5:])
        assert loaded == {image(name) for name in IMAGES}
        sets = [s[i + 1] for s in self.STEPS for i, w in enumerate(s) if w == "--set"]
        repositories = {v.split("=", 1)[1] for v in sets if v.split("=")[0].endswith("repository")}
        assert {image(r) for r in repositories} == loaded
        assert "spec.imagePullPolicy=Never" in sets
        assert "image.pullPolicy=Never" in sets

    def test_should_install_the_charts_in_order_and_wait_for_the_tenant(self) -> None:
        releases = [s[3] for s in self.STEPS if s[:3] == ["helm", "upgrade", "--install"]]
        assert releases == ["algoedge-crds", "algoedge-operator", "acme"]
        assert self.STEPS[-1][-3:] == [
            "--for=condition=Ready",
            "algoedgetenant/acme",
            "--timeout=600s",
        ]

    def test_should_stop_after_the_database_for_tilt(self) -> None:
        steps = up_steps(helm="helm", kubectl="kubectl", cluster_only=True)
        assert not [s for s in steps if s[0] in ("docker", "helm")]
        assert any(str(POSTGRES_MANIFEST) in s for s in steps)

    def test_should_give_the_tenant_the_database_postgres_and_the_tiltfile_have(self) -> None:
        (deployment, _) = yaml.safe_load_all(POSTGRES_MANIFEST.read_text())
        env = {
            e["name"]: e["value"]
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
        assert f"postgresql://{user}:{password}@postgres.trading.svc:5432/{db}" == DATABASE_URL
        tilt = run_tiltfile(REPO / "Tiltfile", helm=find_helm())
        (secret,) = [o for o in tilt.objects if o["kind"] == "Secret"]
        assert base64.b64decode(secret["data"]["url"]).decode() == DATABASE_URL
