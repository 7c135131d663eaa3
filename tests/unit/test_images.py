"""Static checks of images/*/Dockerfile: what each image installs and how it runs.

No Docker engine runs here, so nothing is built: these checks read the Dockerfiles and hold them
to the contracts the rest of the repository states (pyproject extras, uv.lock, the operator's
UID and bridge working directory, the operator's args).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from algoedge_operator.builders.bridge import WORKDIR as BRIDGE_WORKDIR
from algoedge_operator.builders.common import APP_UID

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Which extras each image installs (docs/architecture.md, "Images and commands").
EXPECTED_EXTRAS = {"app": {"api", "worker"}, "bridge": {"bridge"}, "operator": {"operator"}}
BASE_IMAGE = "python:3.11-slim-bookworm"


@dataclass(frozen=True)
class Stage:
    name: str
    instructions: list[tuple[str, str]]

    def values(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            parts = rest.split()
            found.append(Stage(parts[-1] if "AS" in (p.upper() for p in parts) else "", []))
        elif found:
            found[-1].instructions.append((keyword, rest))
    return found


def global_args(path: Path) -> dict[str, str]:
    args = {}
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def dockerfile(image: str) -> Path:
    return IMAGES / image / "Dockerfile"


IMAGE_NAMES = pytest.mark.parametrize("image", sorted(EXPECTED_EXTRAS))


def test_should_have_one_dockerfile_per_image() -> None:
    assert sorted(p.parent.name for p in IMAGES.glob("*/Dockerfile")) == sorted(EXPECTED_EXTRAS)


@IMAGE_NAMES
def test_should_install_the_extras_of_its_image_from_pyproject(image: str) -> None:
    extras = set(re.findall(r"--extra (\S+)", global_args(dockerfile(image))["EXTRAS"]))
    assert extras == EXPECTED_EXTRAS[image]
    assert extras <= PYPROJECT["project"]["optional-dependencies"].keys()
    for conflict in PYPROJECT["tool"]["uv"]["conflicts"]:
        assert not {entry["extra"] for entry in conflict} <= extras, conflict


@IMAGE_NAMES
def test_should_install_from_the_lock_file_with_the_makefiles_uv(image: str) -> None:
    path = dockerfile(image)
    syncs = [v for s in stages(path) for v in s.values("RUN") if "uv sync" in v]
    assert syncs, "no uv sync"
    for command in syncs:
        assert "--locked" in command
        assert "--no-dev" in command
        assert "${EXTRAS}" in command
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert makefile_uv is not None
    assert global_args(path)["UV_VERSION"] == makefile_uv.group(1)


@IMAGE_NAMES
def test_should_build_on_the_pinned_python_base_in_several_stages(image: str) -> None:
    path = dockerfile(image)
    assert global_args(path)["PYTHON_IMAGE"] == BASE_IMAGE
    assert [k for k, _ in instructions(path)].count("FROM") >= 3
    assert stages(path)[-1].name == "runtime"  # the default target is the production image
    runtime = stages(path)[-1]
    assert runtime.values("COPY") == ["--from=build /opt/algoedge/venv /opt/algoedge/venv"]


@IMAGE_NAMES
def test_should_run_as_the_operators_non_root_uid(image: str) -> None:
    for stage in stages(dockerfile(image)):
        if stage.name in ("runtime", "dev"):
            users = stage.values("USER")
            # Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
            assert users, stage.name
            assert users[-1] == f"{APP_UID}:{APP_UID}", stage.name


def exec_form(stage: Stage, keyword: str) -> list[str] | None:
    values = stage.values(keyword)
    return list(json.loads(values[-1])) if values else None


def test_should_start_the_app_command_the_operator_passes_args_to() -> None:
    for image, command in (("app", "api"), ("bridge", "bridge")):
        runtime = stages(dockerfile(image))[-1]
        assert exec_form(runtime, "ENTRYPOINT") == ["algoedge"]
        assert exec_form(runtime, "CMD") == [command]


def test_should_start_the_operator_as_its_plain_manifest_does() -> None:
    runtime = stages(dockerfile("operator"))[-1]
    plain = yaml.safe_load_all((REPO / "k8s" / "operator" / "deployment.yaml").read_text())
    deployment = next(d for d in plain if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # The manifest's args replace CMD; an ENTRYPOINT would be prepended to them.
    assert exec_form(runtime, "ENTRYPOINT") is None
    assert exec_form(runtime, "CMD") == args


def test_should_give_the_bridge_the_working_directory_the_operator_mounts() -> None:
    for stage in stages(dockerfile("bridge")):
        if stage.name in ("runtime", "dev"):
            assert stage.values("WORKDIR")[-1] == BRIDGE_WORKDIR


def test_should_send_only_what_the_images_copy_in_the_build_context() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: nothing from .run/, .venv/ or .git/ gets in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for image in EXPECTED_EXTRAS:
        for stage in stages(dockerfile(image)):
            for copy in stage.values("COPY"):
                words = [w for w in shlex.split(copy) if not w.startswith("--")]
                if "--from=" in copy:
                    continue
                for source in words[:-1]:
                    assert source in allowed, f"{image}: COPY {source} is excluded by .dockerignore"
