"""The kind path end to end, where pods really run: `make kind-up` (devtools/kind.py) brings up a
kind cluster with the images built and loaded, the CRDs, the operator and the sample tenant;
then the tenant is Ready with running pods and the tenant chart's `helm test` passes.

Skipped only where no Docker engine answers (as on the project's CI machines); any other
problem (an engine answering badly, kind missing, a failing step) fails the test, saying what.
tests/unit/test_kind.py checks that decision; this file has never run here (no Docker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devtools.kind import (
    CONTEXT,
    REPO,
    TENANT,
    TENANT_NAMESPACE,
    KindPathBroken,
    NoDocker,
    check_prerequisites,
    probe_docker,
    project_tools,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kind]


@pytest.fixture(scope="module")
def kind_up() -> Iterator[None]:
    try:
        check_prerequisites(probe_docker(os.environ.get("DOCKER_HOST")), shutil.which)
    except NoDocker as reason:
        pytest.skip(f"kind path: {reason}")
    except KindPathBroken as problem:
        pytest.fail(f"kind path: {problem}", pytrace=False)
    done = subprocess.run([sys.executable, "-m", "devtools.kind", "up"], cwd=REPO, check=False)
    assert done.returncode == 0, "make kind-up failed (its output is above)"
    yield
    if os.environ.get("ALGOEDGE_KEEP_KIND") != "1":
        subprocess.run([sys.executable, "-m", "devtools.kind", "down"], cwd=REPO, check=False)


@pytest.mark.timeout(3600)
def test_should_run_the_sample_tenant_on_kind(kind_up: None) -> None:
    helm, kubectl_binary = project_tools()
    kubectl = [kubectl_binary, "--context", CONTEXT, "--namespace", TENANT_NAMESPACE]
    pods = subprocess.run(
        [*kubectl, "get", "pods", "--selector", f"app.kubernetes.io/instance={TENANT}",
         "--output", "jsonpath={.items[*].status.phase}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert pods
    assert set(pods) == {"Running"}
    tested = subprocess.run(
        [helm, "test", TENANT, "--kube-context", CONTEXT, "--namespace", TENANT_NAMESPACE],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
