"""Static checks of images/Dockerfile: what each image target installs and how it runs.

No Docker engine runs here, so nothing is built: these checks read the Dockerfile's stages and
hold them to the contracts the rest of the repository states (pyproject extras, uv.lock, the
operator's UID and bridge working directory, the operator's args; the Tiltfile's targets are
checked by running it, tests/unit/test_tiltfile.py).
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
from algoedge_operator.builders.common import APP_UID, PGBOUNCER_UID, REDIS_UID

from tests.unit.charts.support import OPERATOR_CHART, Helm, find_helm, only

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILE = IMAGES / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Which extras each image's target installs (docs/architecture.md, "Images and commands").
EXPECTED_EXTRAS = {"app": {"api", "worker"}, "bridge": {"bridge"}, "operator": {"operator"}}
#: The operator's editable image with the restart wrapper; only the Tiltfile builds it.
DEV_TARGET = "operator-dev"
#: Where each target's process starts: /tmp is the emptyDir every pod has (read-only root).
EXPECTED_WORKDIR = {"app": "/tmp", "bridge": BRIDGE_WORKDIR, "operator": "/tmp", DEV_TARGET: "/tmp"}
BASE_IMAGE = "python:3.11-slim-bookworm"
VENV = "/opt/algoedge/venv"
UV_CACHE_MOUNT = "--mount=type=cache,target=/root/.cache/uv"


@dataclass(frozen=True)
class Stage:
    name: str
    parent: str
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


def parse_stages(path: Path) -> dict[str, Stage]:
    """Every named stage, in file order, with the image or stage it starts FROM."""
    found: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            assert len(words) == 3, f"unnamed stage: FROM {rest}"
            assert words[1].upper() == "AS", f"unnamed stage: FROM {rest}"
            found.append(Stage(words[2], words[0], []))
        elif found:
            found[-1].instructions.append((keyword, rest))
    by_name = {stage.name: stage for stage in found}
    assert len(by_name) == len(found), "two stages share a name"
    return by_name


def global_args(path: Path) -> dict[str, str]:
    args = {}
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


STAGES = parse_stages(DOCKERFILE)
RUNTIME_TARGETS = pytest.mark.parametrize("target", sorted(EXPECTED_EXTRAS))
ALL_TARGETS = pytest.mark.parametrize("target", [*sorted(EXPECTED_EXTRAS), DEV_TARGET])


def lineage(name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, the first ancestor first."""
    chain = [STAGES[name]]
    while chain[0].parent in STAGES:
        chain.insert(0, STAGES[chain[0].parent])
    return chain


def env_of(name: str) -> dict[str, str]:
    """The ENV a stage has, its ancestors' included (only the KEY=value form is used here)."""
    env: dict[str, str] = {}
    for stage in lineage(name):
        for value in stage.values("ENV"):
            for word in shlex.split(value):
                key, sep, setting = word.partition("=")
                assert sep, f"ENV {value}: use KEY=value"
                env[key] = setting
    return env


def uv_syncs(name: str) -> list[str]:
    """The stage's own `uv sync` commands, with $EXTRAS and friends expanded from its ENV."""
    env = env_of(name)
    expand = re.compile(r"\$\{?(\w+)\}?")
    return [
        expand.sub(lambda m: env.get(m[1], m[0]), run)
        for run in STAGES[name].values("RUN")
        if "uv sync" in run
    ]


def extras_in(text: str) -> set[str]:
    return set(re.findall(r"--extra (\S+)", text))


def venv_stage(target: str) -> str:
    """The stage whose uv sync built the target's venv: the target itself or its COPY --from."""
    if target == DEV_TARGET:
        return target
    copies = STAGES[target].values("COPY")
    assert len(copies) == 1, f"{target} copies more than the venv: {copies}"
    match = re.fullmatch(rf"--from=(\S+) {VENV} {VENV}", copies[0])
    assert match is not None, f"{target}: COPY {copies[0]}"
    return match.group(1)


def exec_form(stage: Stage, keyword: str) -> list[str] | None:
    values = stage.values(keyword)
    return list(json.loads(values[-1])) if values else None


def test_should_build_every_image_from_the_one_dockerfile() -> None:
    assert sorted(p.relative_to(IMAGES) for p in IMAGES.rglob("*Dockerfile*")) == [
        Path("Dockerfile")
    ]
    assert {*EXPECTED_EXTRAS, DEV_TARGET} <= STAGES.keys()


@ALL_TARGETS
def test_should_install_the_extras_of_its_image_from_pyproject(target: str) -> None:
    syncs = uv_syncs(venv_stage(target))
    assert syncs, f"{target}: no uv sync"
    for command in syncs:
        assert extras_in(command) == EXPECTED_EXTRAS.get(target, EXPECTED_EXTRAS["operator"])
    assert extras_in(" ".join(syncs)) <= PYPROJECT["project"]["optional-dependencies"].keys()


def test_should_never_combine_conflicting_extras_in_one_stage() -> None:
    conflicts = [{entry["extra"] for entry in c} for c in PYPROJECT["tool"]["uv"]["conflicts"]]
    assert {"api", "bridge"} in conflicts  # the reason the bridge has a venv of its own
    for name in STAGES:
        # Everything a stage could install: its syncs and the EXTRAS Tilt's `uv sync` reads.
        extras = extras_in(" ".join(uv_syncs(name))) | extras_in(env_of(name).get("EXTRAS", ""))
        for conflict in conflicts:
            assert not conflict <= extras, f"{name} installs {sorted(conflict)} together"


def test_should_install_from_the_lock_file_with_the_makefiles_uv() -> None:
    syncs = [run for stage in STAGES.values() for run in stage.values("RUN") if "uv sync" in run]
    assert syncs, "no uv sync"
    for command in syncs:
        assert "--locked" in command
        assert "--no-dev" in command
        assert "${EXTRAS}" in command  # each stage's extras are set once, in its ENV
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert makefile_uv is not None
    assert global_args(DOCKERFILE)["UV_VERSION"] == makefile_uv.group(1)
    installs = [r for s in STAGES.values() for r in s.values("RUN") if "pip install" in r]
    assert installs
    for install in installs:
        assert '"uv==${UV_VERSION}"' in install


@RUNTIME_TARGETS
def test_should_install_dependencies_before_the_code(target: str) -> None:
    # The dependency layer stays cached while only app/ or operator/ change.
    build = venv_stage(target)
    steps = [(k, v) for stage in lineage(build) for k, v in stage.instructions]
    code_copies = [i for i, (k, v) in enumerate(steps) if k == "COPY" and v.split()[0] == "app"]
    syncs = [i for i, (k, v) in enumerate(steps) if k == "RUN" and "uv sync" in v]
    assert len(code_copies) == 1, steps
    assert len(syncs) == 2, steps
    dependencies, project = (steps[i][1] for i in syncs)
    assert syncs[0] < code_copies[0] < syncs[1]
    assert "--no-install-project" in dependencies
    assert "--no-editable" in project  # the venv must work without /src, which is not copied
    assert UV_CACHE_MOUNT in dependencies
    assert UV_CACHE_MOUNT in project


def test_should_build_on_the_pinned_python_base() -> None:
    assert global_args(DOCKERFILE)["PYTHON_IMAGE"] == BASE_IMAGE
    names = list(STAGES)
    # One stage starts from the pinned image; every other one from a stage defined above it.
    assert [s.name for s in STAGES.values() if s.parent == "${PYTHON_IMAGE}"] == ["base"]
    for stage in STAGES.values():
        if stage.name != "base":
            assert names.index(stage.parent) < names.index(stage.name), stage.name
    # Without --target, docker builds the last stage: it must be a production image.
    assert names[-1] in EXPECTED_EXTRAS


@RUNTIME_TARGETS
def test_should_ship_the_venv_without_build_tools(target: str) -> None:
    assert STAGES[target].parent == "base"
    assert venv_stage(target) == f"build-{target}"
    for stage in lineage(target):
        for keyword, value in stage.instructions:
            assert not re.search(r"\buv\b|pip install", value), f"{target}: {keyword} {value}"


@ALL_TARGETS
def test_should_run_as_the_operators_non_root_uid(target: str) -> None:
    users = STAGES[target].values("USER")
    # Numeric, so that runAsNonRoot can verify it without reading /etc/passwd.
    assert users, target
    assert users[-1] == f"{APP_UID}:{APP_UID}"


@ALL_TARGETS
def test_should_work_in_a_directory_the_pod_can_write(target: str) -> None:
    assert STAGES[target].values("WORKDIR")[-1] == EXPECTED_WORKDIR[target]


def test_should_let_the_bridge_user_write_its_working_directory() -> None:
    # Without a volume (`docker run`), the SDK's ./.metaapi/ still needs a writable directory.
    runs = STAGES["bridge"].values("RUN")
    assert any(f"chown {APP_UID}:{APP_UID} {BRIDGE_WORKDIR}" in run for run in runs), runs


def test_should_start_the_app_command_the_operator_passes_args_to() -> None:
    for target, command in (("app", "api"), ("bridge", "bridge")):
        assert exec_form(STAGES[target], "ENTRYPOINT") == ["algoedge"]
        assert exec_form(STAGES[target], "CMD") == [command]


@pytest.fixture(scope="module")
def chart_args(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    helm = Helm(binary=find_helm(), home=tmp_path_factory.mktemp("helm-home"))
    deployment = only(helm.render(OPERATOR_CHART, show_only="deployment.yaml"), "Deployment")
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_should_start_the_operator_as_its_manifests_do(chart_args: list[str]) -> None:
    runtime = STAGES["operator"]
    plain = yaml.safe_load_all((REPO / "k8s" / "operator" / "deployment.yaml").read_text())
    deployment = next(d for d in plain if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # The manifests' args replace CMD; an ENTRYPOINT would be prepended to them.
    assert exec_form(runtime, "ENTRYPOINT") is None
    assert exec_form(runtime, "CMD") == args
    # The chart passes the same command plus its logFormat value.
    assert [a for a in chart_args if not a.startswith("--log-format=")] == args
    # In Tilt the chart's args run under the wrapper that restarts kopf after a sync.
    assert exec_form(STAGES[DEV_TARGET], "ENTRYPOINT") == ["restart-on-change"]
    assert exec_form(STAGES[DEV_TARGET], "CMD") == args


def test_should_send_only_what_the_images_copy_in_the_build_context() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # allow-list: nothing from .run/, .venv/ or .git/ gets in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in STAGES.values():
        for copy in stage.values("COPY"):
            if "--from=" in copy:
                continue
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            for source in words[:-1]:
                assert source in allowed, f"{stage.name}: COPY {source} is excluded"


#: The local support images `make images` builds for the real node, and the UID the operator's
#: pod spec runs each as (runAsUser; the image must own its writable paths for that UID).
LOCAL_IMAGES = {"redis": REDIS_UID, "pgbouncer": PGBOUNCER_UID}


@pytest.mark.parametrize("target", sorted(LOCAL_IMAGES))
def test_should_run_the_local_support_images_as_the_operators_uids(target: str) -> None:
    uid = LOCAL_IMAGES[target]
    assert STAGES[target].parent == "base"
    assert STAGES[target].values("USER")[-1] == f"{uid}:{uid}"


def test_should_start_redis_with_the_config_the_operator_passes_as_args() -> None:
    # The StatefulSet sets `args: [/etc/redis/redis.conf]` and no command.
    assert exec_form(STAGES["redis"], "ENTRYPOINT") == ["redis-server"]
    assert any(
        f"chown {REDIS_UID}:{REDIS_UID} /data" in run for run in STAGES["redis"].values("RUN")
    )
