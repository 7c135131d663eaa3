"""Render the charts with the project's helm binary and parse the result, for the chart tests.

helm comes from the control-plane build (``devtools/controlplane/build.sh``, which ``make test``
runs first through ``make controlplane``) or from ``$ALGOEDGE_CONTROLPLANE_BIN``. These tests
never start that build themselves: a cold build takes minutes, so a missing helm fails the
tests at once with the command that provides it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.buildcache import NotBuilt, cached_bin_dir
from devtools.controlplane.cluster import BIN_ENV, BUILD_SCRIPT

REPO = Path(__file__).resolve().parents[3]
CHARTS = REPO / "charts"
OPERATOR_CHART = CHARTS / "algoedge-operator"
CRDS_CHART = CHARTS / "algoedge-crds"
TENANT_CHART = CHARTS / "algoedge-tenant"
#: The least the tenant chart renders with: a database (it refuses to render without one).
TENANT_VALUES = {"database": {"url": "postgresql://acme:s3cret@db.example.com:5432/acme"}}
CRD_FILE = REPO / "crds" / "algoedge.io_algoedgetenants.yaml"
RBAC_FILE = REPO / "k8s" / "operator" / "rbac.yaml"
DEPLOYMENT_FILE = REPO / "k8s" / "operator" / "deployment.yaml"

RELEASE = "algoedge"
NAMESPACE = "algoedge-system"
#: Labels every object of both charts carries (STYLE.md, "Deployment files").
REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
)
MISSING_HELM = (
    "helm is needed for the chart tests and is not built yet: run `make controlplane` "
    "(devtools/controlplane/build.sh; a cold build takes about 8 minutes), or point "
    f"${BIN_ENV} at a directory holding helm"
)

Manifest = dict[str, Any]


def _bin_dir_from_build_script() -> Path:
    """The cached bin directory build.sh prints, without letting it start a build."""
    try:
        return cached_bin_dir(BUILD_SCRIPT)
    except NotBuilt as exc:
        said = f"\nbuild.sh said:\n{exc.said}" if exc.said else ""
        pytest.fail(f"{MISSING_HELM}{said}", pytrace=False)


def find_helm() -> Path:
    """The project's helm; fails the calling test with a clear message when it is missing."""
    from_env = os.environ.get(BIN_ENV)
    bin_dir = Path(from_env) if from_env else _bin_dir_from_build_script()
    helm = bin_dir / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(f"{MISSING_HELM} ({helm} is not an executable)", pytrace=False)
    return helm


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Helm:
    """helm with private HELM_* homes, so it never reads or writes the user's configuration."""

    binary: Path
    home: Path

    def run(self, *args: str) -> HelmResult:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        env.update(
            {
                f"HELM_{kind}_HOME": str(self.home / kind.lower())
                for kind in ("CACHE", "CONFIG", "DATA")
            }
        )
        # No cluster: `helm template` must not reach one (it does not, without --validate).
        env["KUBECONFIG"] = str(self.home / "no-kubeconfig")
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        return HelmResult(result.returncode, result.stdout, result.stderr)

    def template_args(
        self,
        chart: Path,
        *,
        values: Mapping[str, Any] | None,
        set_values: Mapping[str, str] | None,
        release: str,
        namespace: str,
        show_only: str | None,
    ) -> list[str]:
        args = ["template", release, str(chart), "--namespace", namespace]
        if values is not None:
            handle, name = tempfile.mkstemp(dir=self.home, prefix="values-", suffix=".yaml")
            with os.fdopen(handle, "w") as file:
                yaml.safe_dump(dict(values), file)
            args += ["--values", name]
        for key, value in (set_values or {}).items():
            args += ["--set", f"{key}={value}"]
        if show_only is not None:
            args += ["--show-only", f"templates/{show_only}"]
        return args

    def render(
        self,
        chart: Path,
        *,
        values: Mapping[str, Any] | None = None,
        set_values: Mapping[str, str] | None = None,
        release: str = RELEASE,
        namespace: str = NAMESPACE,
        show_only: str | None = None,
    ) -> list[Manifest]:
        """The objects ``helm template`` renders; a failure fails the test with helm's words."""
        result = self.run(
            *self.template_args(
                chart,
                values=values,
                set_values=set_values,
                release=release,
                namespace=namespace,
                show_only=show_only,
            )
        )
        if result.returncode != 0:
            pytest.fail(f"helm template failed:\n{result.stderr}", pytrace=False)
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def render_error(
        self,
        chart: Path,
        *,
        values: Mapping[str, Any] | None = None,
        set_values: Mapping[str, str] | None = None,
    ) -> str:
        """helm's error message for values that must be refused; fails if they render."""
        result = self.run(
            *self.template_args(
                chart,
                values=values,
                set_values=set_values,
                release=RELEASE,
                namespace=NAMESPACE,
                show_only=None,
            )
        )
        if result.returncode == 0:
            pytest.fail(f"helm template accepted values it must refuse: {values or set_values}")
        return result.stderr


def only(manifests: Sequence[Manifest], kind: str) -> Manifest:
    """The single object of ``kind``."""
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {[m['kind'] for m in manifests]}"
    return found[0]


def kinds(manifests: Sequence[Manifest]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def load_documents(path: Path) -> list[Manifest]:
    """Every YAML document of ``path`` (as kubectl reads them: each document on its own)."""
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    except yaml.YAMLError as error:
        problem = str(error)
    # kubectl reads each document on its own too, so `kubectl apply -f` fails the same way.
    pytest.fail(f"{path.relative_to(REPO)} is not valid YAML: {problem}", pytrace=False)
