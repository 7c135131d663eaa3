"""The Tiltfile, executed: run in a real Starlark interpreter (starlark-rust) with a stand-in for
Tilt's built-ins (devtools/tilt.py), then checked for what a developer relies on. This stands in
for Tilt's own `tilt alpha tiltfile-result` (`make tilt-check`), which needs the tilt binary."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devtools.tilt import TiltfileError, TiltRun, image_name, matches, run_tiltfile
from tests.unit.charts.support import find_helm
from tests.unit.test_images import DEV_TARGET, DOCKERFILE, STAGES, env_of, extras_in

REPO = Path(__file__).resolve().parents[2]
TILTFILE = REPO / "Tiltfile"


@pytest.fixture(scope="module")
def helm() -> Path:
    return find_helm()


@pytest.fixture(scope="module")
def tilt(helm: Path) -> TiltRun:
    return run_tiltfile(TILTFILE, helm=helm)


def resource_holding(tilt: TiltRun, kind: str, name: str) -> str:
    (obj,) = [o for o in tilt.objects if o["kind"] == kind and o["metadata"]["name"] == name]
    resource = tilt.resource_of(obj)
    assert resource is not None, f"{kind} {name} belongs to no resource"
    return resource


class TestTheTiltfileRuns:
    def test_should_build_every_image_the_manifests_reference(self, tilt: TiltRun) -> None:
        built = {image_name(image.ref) for image in tilt.images}
        referenced = list(tilt.referenced_images())
        assert referenced, "no workload references an image"
        unbuilt = [(w, i) for w, i in referenced if image_name(i) not in built]
        assert not unbuilt, f"images deployed but never built: {unbuilt}"
        # And Tilt warns about a build nothing deploys.
        used = {image_name(i) for _, i in referenced}
        assert {image_name(image.ref) for image in tilt.images} <= used

    def test_should_depend_only_on_resources_that_exist(self, tilt: TiltRun) -> None:
        names = tilt.resource_names()
        for resource, deps in tilt.resource_deps().items():
            assert set(deps) <= names, f"{resource} depends on unknown {set(deps) - names}"

    def test_should_name_existing_workloads_and_objects(self, tilt: TiltRun) -> None:
        workloads = tilt.workloads()
        for name, arguments in tilt.k8s_resources.items():
            if arguments["workload"]:
                assert arguments["workload"] in workloads, f"{name}: no such workload"
            for selector in arguments["objects"]:
                selected = [o for o in tilt.objects if matches(selector, o)]
                assert len(selected) == 1, f"{name}: {selector} selects {len(selected)} objects"

    def test_should_pass_the_database_url_argument_to_the_tenants_secret(self, helm: Path) -> None:
        url = "postgresql://acme:other@db.example.com:5432/acme"
        tilt = run_tiltfile(TILTFILE, helm=helm, args={"database-url": url})
        (secret,) = [o for o in tilt.objects if o["kind"] == "Secret"]
        assert base64.b64decode(secret["data"]["url"]).decode() == url
        with pytest.raises(TiltfileError, match="undefined arguments"):
            run_tiltfile(TILTFILE, helm=helm, args={"databse-url": url})

    def test_should_point_at_paths_that_exist(self, tilt: TiltRun) -> None:
        assert tilt.paths
        missing = [p for p in tilt.paths if not (REPO / p).exists()]
        assert not missing, f"the Tiltfile names paths that do not exist: {missing}"

    def test_should_sync_only_what_the_build_context_holds(self, tilt: TiltRun) -> None:
        for image in tilt.images:
            only = image.arguments.get("only") or ["."]
            for step in image.live_update:
                if step["step"] != "sync":
                    continue
                local = Path(step["local_path"])
                assert any(local.is_relative_to(Path(o)) for o in only), (
                    f"{image.ref}: sync of {local} outside its build context {only}"
                )
                assert step["remote_path"].startswith("/"), step

    def test_should_apply_the_crd_before_the_operator_and_the_tenant(self, tilt: TiltRun) -> None:
        crds = resource_holding(tilt, "CustomResourceDefinition", "algoedgetenants.algoedge.io")
        operator = resource_holding(tilt, "Deployment", "algoedge-operator")
        tenant = resource_holding(tilt, "AlgoEdgeTenant", "acme")
        assert tilt.depends_on(operator, crds)
        assert tilt.depends_on(tenant, crds)
        assert tilt.depends_on(tenant, operator)

    def test_should_label_every_resource(self, tilt: TiltRun) -> None:
        for name, arguments in {**tilt.k8s_resources, **tilt.local_resources}.items():
            assert arguments["labels"], f"{name} has no label"

    def test_should_build_the_dockerfiles_targets_with_the_dev_extras(self, tilt: TiltRun) -> None:
        assert {i.arguments["dockerfile"] for i in tilt.images} == {
            str(DOCKERFILE.relative_to(REPO))
        }
        assert sorted(i.arguments["target"] for i in tilt.images) == ["app", "bridge", DEV_TARGET]
        assert all(i.arguments["target"] in STAGES for i in tilt.images)
        (dev,) = [i for i in tilt.images if i.arguments["target"] == DEV_TARGET]
        runs = [s["cmd"] for s in dev.live_update if s["step"] == "run"]
        # `uv sync ... $EXTRAS` reads the dev stage's EXTRAS: the operator's extras.
        assert any("$EXTRAS" in cmd for cmd in runs)
        assert extras_in(env_of(DEV_TARGET)["EXTRAS"]) == {"operator"}

    def test_should_create_the_tenants_database_secret_labelled_for_it(self, tilt: TiltRun) -> None:
        (secret,) = [o for o in tilt.objects if o["kind"] == "Secret"]
        assert secret["metadata"]["labels"]["algoedge.io/tenant"] == "acme"
        assert not [o for o in tilt.objects if o["kind"] == "Pod"], "helm test hooks are dropped"


class TestOnlyKindClusters:
    def test_should_allow_only_kind_contexts(self, tilt: TiltRun) -> None:
        assert tilt.allowed_contexts
        assert all(c.startswith("kind-") for c in tilt.allowed_contexts)

    @pytest.mark.parametrize("context", ["docker-desktop", "algoedge-local", "prod-eu-1"])
    def test_should_refuse_any_other_context(self, helm: Path, context: str) -> None:
        with pytest.raises(TiltfileError, match=f"only against a kind cluster.*{context}"):
            run_tiltfile(TILTFILE, helm=helm, context=context)


class TestTheStandIn:
    """The stand-in catches what Tilt would refuse (so a passing run above means something)."""

    def run(self, tmp_path: Path, helm: Path, source: str) -> TiltRun:
        path = tmp_path / "Tiltfile"
        path.write_text(source)
        return run_tiltfile(path, helm=helm)

    def test_should_refuse_an_argument_tilts_api_does_not_have(
        self, tmp_path: Path, helm: Path
    ) -> None:
        with pytest.raises(TiltfileError, match="resource_dep"):
            self.run(tmp_path, helm, "k8s_resource('x', resource_dep=['y'])\n")

    def test_should_refuse_a_missing_argument(self, tmp_path: Path, helm: Path) -> None:
        with pytest.raises(TiltfileError, match="context"):
            self.run(tmp_path, helm, "docker_build('img')\n")

    def test_should_refuse_an_unknown_name(self, tmp_path: Path, helm: Path) -> None:
        with pytest.raises(TiltfileError, match="k8s_resorce"):
            self.run(tmp_path, helm, "k8s_resorce('x')\n")

    def test_should_refuse_a_chart_helm_cannot_render(self, tmp_path: Path, helm: Path) -> None:
        (tmp_path / "chart").mkdir()
        with pytest.raises(TiltfileError, match="helm template"):
            self.run(tmp_path, helm, "k8s_yaml(helm('chart'))\n")

    def test_should_report_a_dependency_on_a_resource_that_does_not_exist(
        self, tmp_path: Path, helm: Path
    ) -> None:
        tilt = self.run(
            tmp_path, helm, "local_resource('a', cmd='true', resource_deps=['b'], labels=['x'])\n"
        )
        assert tilt.resource_deps() == {"a": ["b"]}
        assert "b" not in tilt.resource_names()
