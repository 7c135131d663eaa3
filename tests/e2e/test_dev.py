"""`make dev` end to end: services, API, worker, beat, mail sink, control plane and operator, then
Ctrl-C stops them all.

The operator's scaler reads the dev API's real /internal/v1/capacity: accounts linked through the
API must scale tenant dev's bridge (2 accounts per replica).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools.controlplane.pytest_plugin import wait_until

REPO = Path(__file__).resolve().parents[2]


class DevProcess:
    """`python -m devtools.dev` with its output collected line by line."""

    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.dev", f"--dir={directory}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if found := re.search(pattern, line):
                return found
        if self.process.poll() is not None:
            raise AssertionError("make dev exited early:\n" + "\n".join(self.lines[-40:]))
        return None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def call(base: str, method: str, path: str, body: Any = None, token: str = "") -> Any:
    response = requests.request(
        method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.ok, (method, path, response.status_code, response.text)
    return response.json() if response.content else None


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path: Postgres runs as the postgres user when we are root, and
    pytest's folders are private to root."""
    root = Path(tempfile.mkdtemp(prefix="algoedge-dev-"))
    root.chmod(0o755)
    yield root / "run"
    shutil.rmtree(root, ignore_errors=True)


def test_make_dev_runs_everything_and_the_bridge_follows_linked_accounts(run_dir: Path) -> None:
    dev = DevProcess(run_dir)
    try:
        wait_until("make dev to be up", lambda: dev.find(r"kubectl get aet -n dev"), timeout=240)
        api = dev.find(r"API +(http://127\.0\.0\.1:\d+)")
        exported = dev.find(r"export KUBECONFIG=(\S+) PATH=(\S+):\$PATH")
        assert api is not None
        assert exported is not None
        base, kubeconfig, bin_dir = api.group(1), exported.group(1), exported.group(2)
        # make test builds the monitoring tools, so make dev runs a Prometheus (docs/monitoring.md).
        prometheus = dev.find(r"Prometheus +(http://127\.0\.0\.1:\d+)")
        assert prometheus is not None, dev.output

        def kubectl(*args: str) -> str:
            return subprocess.run(
                [f"{bin_dir}/kubectl", f"--kubeconfig={kubeconfig}", "--namespace=dev", *args],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        wait_until(
            "tenant dev to be Ready",
            lambda: kubectl("get", "aet", "dev", f"--output={ready}") == "True",
            timeout=120,
        )
        replicas = "jsonpath={.spec.replicas}"
        assert kubectl("get", "statefulset", "dev-bridge", f"--output={replicas}") == "1"

        credentials = {"email": "dev-e2e@example.com", "password": "correct horse battery"}
        call(base, "POST", "/api/v1/auth/register", {**credentials, "name": "Dev"})
        token = call(base, "POST", "/api/v1/auth/login", credentials)["access_token"]
        # The API only enqueued the welcome e-mail; the dev worker sent it to the dev sink.
        wait_until(
            "the welcome e-mail in the mail folder",
            lambda: dev.find(r"mail: to Dev <dev-e2e@example\.com>: Welcome to AlgoEdge"),
            timeout=60,
        )
        (welcome,) = (run_dir / "mail").glob("*.eml")
        assert "Subject: Welcome to AlgoEdge" in welcome.read_text()
        for login in ("5001", "5002", "5003"):
            account = {"login": login, "server": "Demo-Server", "password": "pw"}
            call(base, "POST", "/api/v1/accounts", account, token=token)
        # 3 linked accounts at 2 per replica: the operator reads them from the API and scales.
        wait_until(
            "the bridge to scale to 2 replicas",
            lambda: kubectl("get", "statefulset", "dev-bridge", f"--output={replicas}") == "2",
            timeout=120,
        )
        linked = "jsonpath={.status.linkedAccounts}"
        assert kubectl("get", "aet", "dev", f"--output={linked}") == "3"

        def scraped() -> set[str]:
            targets = requests.get(prometheus.group(1) + "/api/v1/targets", timeout=10).json()
            return {
                t["labels"]["component"]
                for t in targets["data"]["activeTargets"]
                if t["health"] == "up" and t["labels"]["tenant"] == "dev"
            }

        components = {"api", "worker", "beat", "bridge", "pgbouncer", "redis"}
        wait_until(
            "Prometheus to scrape every component", lambda: scraped() == components, timeout=60
        )
        rules = requests.get(prometheus.group(1) + "/api/v1/rules", timeout=10).json()
        assert {g["name"] for g in rules["data"]["groups"]} >= {"algoedge.dev.dev.api"}
    finally:
        dev.process.send_signal(signal.SIGINT)
        code = dev.process.wait(timeout=90)
    time.sleep(0.5)  # the reader thread drains the last lines
    assert code == 0, dev.output
    assert (
        "dev: stopped operator, control plane, API, worker, beat, bridge, MetaAPI simulator, mail, "
        "pgBouncer, Redis and PostgreSQL" in dev.output
    )
    pids = run_dir / "cluster" / "pids"
    assert not list(pids.glob("*.pid")), "control plane components left running"
    for log in ("operator.log", "worker.log", "beat.log", "metaapi-sim.log"):
        assert "Traceback" not in (run_dir / log).read_text(), log
