"""Run a Tiltfile in a real Starlark interpreter with a stand-in for Tilt's built-ins, recording
what it asks for, so tests can check it the way Tilt would read it.

This is a stand-in for Tilt's own evaluation (`tilt alpha tiltfile-result`, which `make
tilt-check` runs when tilt is installed; Tilt is on no package registry these machines reach).
The interpreter is real: starlark-rust (the ``starlark-pyo3`` wheel) parses and executes the
file, so a syntax error, an unknown name, a misspelt or missing argument of a built-in (each
built-in below has the parameters of Tilt's documented API, docs.tilt.dev/api.html) or a
``fail()`` fails as it would under Tilt. ``helm()`` runs the real ``helm template`` and, like
Tilt, drops the charts' test hooks. What Tilt does *after* evaluation (building, applying,
port-forwarding, live update) is not simulated: :class:`TiltRun` gives the recorded calls and
the objects the file would apply, and the checks (images built, resource dependencies, paths)
are the tests' (tests/unit/test_tiltfile.py). Starlark dialects differ slightly: Tilt uses
go.starlark.net; a construct only one of the two accepts would be judged by starlark-rust here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Tilt's trigger-mode constants (their values are opaque to a Tiltfile).
TRIGGER_MODE_AUTO = 0
TRIGGER_MODE_MANUAL = 1
#: Kinds Tilt treats as workloads (a resource of their own, images injected, pods followed).
WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
)

Manifest = dict[str, Any]


class TiltfileError(Exception):
    """The Tiltfile failed to evaluate: Starlark's own error (with its traceback), a refused
    argument, or a ``fail()``."""


@dataclass(frozen=True)
class ImageBuild:
    """One ``docker_build`` or ``custom_build``."""

    ref: str
    builder: str
    arguments: Mapping[str, Any]

    @property
    def live_update(self) -> list[Mapping[str, Any]]:
        return list(self.arguments.get("live_update") or [])


@dataclass
class TiltRun:
    """What the Tiltfile asked Tilt for, in call order where order matters."""

    root: Path
    context: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    images: list[ImageBuild] = field(default_factory=list)
    objects: list[Manifest] = field(default_factory=list)
    #: k8s_resource calls, keyed by the resource's final name.
    k8s_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    local_resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Kinds registered with k8s_kind, with their image JSON paths.
    kinds: dict[str, list[str]] = field(default_factory=dict)
    allowed_contexts: list[str] = field(default_factory=list)
    #: Every local path the file names (build contexts, Dockerfiles, charts, YAML, syncs, deps).
    paths: list[str] = field(default_factory=list)

    def called(self, name: str) -> list[dict[str, Any]]:
        return [arguments for called, arguments in self.calls if called == name]

    # -- how Tilt assembles resources from what was recorded ------------------------------------

    def workloads(self) -> dict[str, Manifest]:
        """Objects Tilt makes a resource of, by Tilt's default name: the object's name, or
        ``name:kind`` where two workloads share a name."""
        found = [o for o in self.objects if o["kind"] in WORKLOAD_KINDS or o["kind"] in self.kinds]
        names = [o["metadata"]["name"] for o in found]
        return {
            (o["metadata"]["name"] if names.count(o["metadata"]["name"]) == 1 else
             f"{o['metadata']['name']}:{o['kind'].lower()}"): o
            for o in found
        }  # fmt: skip

    def resource_names(self) -> set[str]:
        names = {name for name in self.workloads() if name not in self.renamed()}
        names |= set(self.k8s_resources)
        names |= set(self.local_resources)
        return names

    def renamed(self) -> set[str]:
        return {
            arguments["workload"]
            for arguments in self.k8s_resources.values()
            if arguments.get("workload") and arguments.get("new_name")
        }

    def resource_deps(self) -> dict[str, list[str]]:
        deps = {name: list(a.get("resource_deps") or []) for name, a in self.k8s_resources.items()}
        deps.update(
            {name: list(a.get("resource_deps") or []) for name, a in self.local_resources.items()}
        )
        return deps

    def depends_on(self, resource: str, other: str) -> bool:
        """Whether ``resource`` waits for ``other``, directly or through its dependencies."""
        deps = self.resource_deps()
        seen: set[str] = set()
        pending = list(deps.get(resource, []))
        while pending:
            current = pending.pop()
            if current == other:
                return True
            if current not in seen:
                seen.add(current)
                pending.extend(deps.get(current, []))
        return False

    def resource_of(self, obj: Manifest) -> str | None:
        """The resource an object is deployed by (its workload's, or one naming it in objects)."""
        for name, workload in self.workloads().items():
            if workload is obj:
                for final, arguments in self.k8s_resources.items():
                    if arguments.get("workload") == name:
                        return final
                return name
        for final, arguments in self.k8s_resources.items():
            if any(matches(selector, obj) for selector in arguments.get("objects") or []):
                return final
        return None

    def referenced_images(self) -> Iterator[tuple[str, str]]:
        """(workload name, image) of every container image and k8s_kind image path."""
        for name, workload in self.workloads().items():
            paths = self.kinds.get(workload["kind"])
            if paths is not None:
                for path in paths:
                    yield name, json_path(workload, path)
                continue
            spec = workload.get("spec", {})
            pod = spec.get("template", {}).get("spec", spec)
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                yield name, container["image"]


def image_name(reference: str) -> str:
    """The name Tilt matches builds by: the reference without its tag or digest."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def json_path(obj: Manifest, path: str) -> str:
    """A ``{.a.b}`` JSON path (the only form the Tiltfile uses) of ``obj``."""
    if not (path.startswith("{.") and path.endswith("}")):
        raise ValueError(f"unsupported JSON path {path!r}: only {{.a.b}} is read")
    value: Any = obj
    for part in path[2:-1].split("."):
        value = value[part]
    return str(value)


def matches(selector: str, obj: Manifest) -> bool:
    """Tilt's ``objects`` selector: ``name[:kind[:namespace]]``, case-insensitive."""
    parts = selector.lower().split(":")
    wanted = [obj["metadata"]["name"], obj["kind"], obj["metadata"].get("namespace", "")]
    return all(part == value.lower() for part, value in zip(parts, wanted, strict=False))


def _documents(text: str) -> list[Manifest]:
    return [dict(doc) for doc in yaml.safe_load_all(text) if doc]


def _is_test_hook(obj: Manifest) -> bool:
    hooks = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(h.strip().startswith("test") for h in hooks.split(","))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclass
class _Builtins:
    """Tilt's built-ins the stand-in offers, each with the parameters of Tilt's API."""

    run: TiltRun
    helm_binary: Path
    args: Mapping[str, Any]
    defined: dict[str, Any] = field(default_factory=dict)

    def _record(self, builtin: str, /, **arguments: Any) -> None:
        self.run.calls.append((builtin, arguments))

    def _path(self, path: str) -> str:
        self.run.paths.append(path)
        return path

    # settings
    def version_settings(self, check_updates: bool = True, constraint: str = "") -> None:
        self._record("version_settings", check_updates=check_updates, constraint=constraint)

    def update_settings(
        self,
        max_parallel_updates: int = 3,
        k8s_upsert_timeout_secs: int = 30,
        suppress_unused_image_warnings: Any = None,
    ) -> None:
        self._record(
            "update_settings",
            max_parallel_updates=max_parallel_updates,
            k8s_upsert_timeout_secs=k8s_upsert_timeout_secs,
            suppress_unused_image_warnings=suppress_unused_image_warnings,
        )

    def ci_settings(
        self, k8s_grace_period: str = "", timeout: str = "", readiness_timeout: str = ""
    ) -> None:
        self._record(
            "ci_settings",
            k8s_grace_period=k8s_grace_period,
            timeout=timeout,
            readiness_timeout=readiness_timeout,
        )

    def allow_k8s_contexts(self, contexts: Any) -> None:
        self._record("allow_k8s_contexts", contexts=contexts)
        self.run.allowed_contexts.extend(_as_list(contexts))

    def k8s_context(self) -> str:
        return self.run.context

    # config
    def config_define_string(self, name: str, args: bool = False, usage: str = "") -> None:
        self.defined[name] = "string"

    def config_define_bool(self, name: str, args: bool = False, usage: str = "") -> None:
        self.defined[name] = "bool"

    def config_define_string_list(self, name: str, args: bool = False, usage: str = "") -> None:
        self.defined[name] = "string_list"

    def config_parse(self) -> dict[str, Any]:
        unknown = set(self.args) - set(self.defined)
        if unknown:
            raise TiltfileError(f"config.parse: undefined arguments {sorted(unknown)}")
        return dict(self.args)

    # images
    def docker_build(
        self,
        ref: str,
        context: str,
        build_args: Mapping[str, str] | None = None,
        dockerfile: str = "Dockerfile",
        dockerfile_contents: str = "",
        live_update: Sequence[Any] = (),
        match_in_env_vars: bool = False,
        ignore: Any = (),
        only: Any = (),
        entrypoint: Any = (),
        target: str = "",
        ssh: Any = "",
        network: str = "",
        secret: Any = "",
        extra_tag: Any = "",
        container_args: Any = None,
        cache_from: Any = (),
        pull: bool = False,
        platform: str = "",
        env_vars: Mapping[str, str] | None = None,
    ) -> None:
        arguments = {
            "context": self._path(context),
            "dockerfile": self._path(dockerfile) if not dockerfile_contents else "",
            "live_update": list(live_update),
            "only": [self._path(str(Path(context) / p)) for p in _as_list(only)],
            "target": target,
            "build_args": dict(build_args or {}),
        }
        self._record("docker_build", ref=ref, **arguments)
        self.run.images.append(ImageBuild(ref, "docker_build", arguments))

    def custom_build(
        self,
        ref: str,
        command: Any,
        deps: Sequence[str],
        tag: str = "",
        disable_push: bool = False,
        skips_local_docker: bool = False,
        live_update: Sequence[Any] = (),
        match_in_env_vars: bool = False,
        ignore: Any = (),
        entrypoint: Any = (),
        command_bat_val: str = "",
        outputs_image_ref_to: str = "",
        command_bat: Any = "",
        image_deps: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        dir: str = "",
    ) -> None:
        arguments = {
            "command": command,
            "deps": [self._path(d) for d in deps],
            "live_update": list(live_update),
        }
        self._record("custom_build", ref=ref, **arguments)
        self.run.images.append(ImageBuild(ref, "custom_build", arguments))

    # live_update steps: plain records, checked by the tests.
    def sync(self, local_path: str, remote_path: str) -> dict[str, Any]:
        return {"step": "sync", "local_path": self._path(local_path), "remote_path": remote_path}

    def run_step(self, cmd: Any, trigger: Any = (), echo_off: bool = False) -> dict[str, Any]:
        triggers = [self._path(t) for t in _as_list(trigger)]
        return {"step": "run", "cmd": cmd, "trigger": triggers}

    def fall_back_on(self, files: Any) -> dict[str, Any]:
        return {"step": "fall_back_on", "files": [self._path(f) for f in _as_list(files)]}

    def initial_sync(self) -> dict[str, Any]:
        return {"step": "initial_sync"}

    def restart_container(self) -> dict[str, Any]:
        return {"step": "restart_container"}

    # Kubernetes
    def blob(self, contents: str) -> dict[str, Any]:
        return {"blob": contents}

    def read_file(self, file_path: str, default: str | None = None) -> dict[str, Any]:
        path = self.run.root / self._path(file_path)
        if not path.exists() and default is not None:
            return {"blob": default}
        return {"blob": path.read_text()}

    def helm(
        self,
        pathToChartDir: str,
        name: str = "",
        namespace: str = "",
        values: Any = (),
        set: Any = (),
        kube_version: str = "",
        skip_crds: bool = False,
    ) -> dict[str, Any]:
        """``helm template`` for real, test hooks dropped (as Tilt does)."""
        args = ["template", name or "chart", str(self.run.root / self._path(pathToChartDir))]
        if namespace:
            args += ["--namespace", namespace]
        for values_file in _as_list(values):
            args += ["--values", str(self.run.root / self._path(values_file))]
        for assignment in _as_list(set):
            args += ["--set", assignment]
        if kube_version:
            args += ["--kube-version", kube_version]
        if not skip_crds:
            args.append("--include-crds")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        env["KUBECONFIG"] = os.devnull
        result = subprocess.run(
            [str(self.helm_binary), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise TiltfileError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        kept = [d for d in _documents(result.stdout) if not _is_test_hook(d)]
        self._record("helm", chart=pathToChartDir, name=name, namespace=namespace, set=set)
        return {"blob": yaml.safe_dump_all(kept, sort_keys=False)}

    def k8s_yaml(self, yaml: Any, allow_duplicates: bool = False) -> None:
        for item in _as_list(yaml):
            if isinstance(item, dict) and "blob" in item:
                text = item["blob"]
            elif isinstance(item, str):
                text = (self.run.root / self._path(item)).read_text()
            else:
                raise TiltfileError(f"k8s_yaml: unsupported argument {item!r}")
            self._record("k8s_yaml", yaml=item if isinstance(item, str) else "<blob>")
            self.run.objects.extend(_documents(text))

    def k8s_kind(
        self,
        kind: str,
        api_version: str = "",
        *,
        image_json_path: Any = (),
        image_object: Any = None,
        pod_readiness: str = "",
    ) -> None:
        self._record("k8s_kind", kind=kind, image_json_path=image_json_path)
        self.run.kinds[kind] = [str(p) for p in _as_list(image_json_path)]

    def k8s_resource(
        self,
        workload: str = "",
        new_name: str = "",
        port_forwards: Any = (),
        extra_pod_selectors: Any = (),
        trigger_mode: int = TRIGGER_MODE_AUTO,
        resource_deps: Sequence[str] = (),
        objects: Sequence[str] = (),
        auto_init: bool = True,
        labels: Any = (),
        links: Any = (),
        pod_readiness: str = "",
        discovery_strategy: str = "",
    ) -> None:
        if not workload and not new_name:
            raise TiltfileError("k8s_resource: give a workload or a new_name")
        arguments = {
            "workload": workload,
            "new_name": new_name,
            "resource_deps": list(resource_deps),
            "objects": list(objects),
            "labels": _as_list(labels),
            "port_forwards": _as_list(port_forwards),
        }
        self._record("k8s_resource", **arguments)
        self.run.k8s_resources[new_name or workload] = arguments

    def local_resource(
        self,
        name: str,
        cmd: Any = "",
        deps: Any = (),
        trigger_mode: int = TRIGGER_MODE_AUTO,
        resource_deps: Sequence[str] = (),
        ignore: Any = (),
        auto_init: bool = True,
        serve_cmd: Any = "",
        cmd_bat: Any = "",
        serve_cmd_bat: Any = "",
        allow_parallel: bool = False,
        links: Any = (),
        tags: Any = (),
        env: Mapping[str, str] | None = None,
        serve_env: Mapping[str, str] | None = None,
        readiness_probe: Any = None,
        dir: str = "",
        serve_dir: str = "",
        labels: Any = (),
    ) -> None:
        arguments = {
            "cmd": cmd,
            "deps": [self._path(d) for d in _as_list(deps)],
            "resource_deps": list(resource_deps),
            "trigger_mode": trigger_mode,
            "auto_init": auto_init,
            "labels": _as_list(labels),
        }
        self._record("local_resource", name=name, **arguments)
        self.local_resources_add(name, arguments)

    def local_resources_add(self, name: str, arguments: dict[str, Any]) -> None:
        if name in self.run.local_resources or name in self.run.k8s_resources:
            raise TiltfileError(f"local_resource: a resource named {name!r} already exists")
        self.run.local_resources[name] = arguments

    def local(self, command: Any, quiet: bool = False, **_: Any) -> str:
        raise TiltfileError(
            "local() runs a command while the Tiltfile loads; the stand-in does not run commands"
        )

    def callables(self) -> dict[str, Callable[..., Any]]:
        """Name in the Tiltfile -> implementation (``config.*`` come through a struct)."""
        names = [
            *("version_settings", "update_settings", "ci_settings", "allow_k8s_contexts"),
            *("k8s_context", "docker_build", "custom_build", "sync", "fall_back_on"),
            *("initial_sync", "restart_container", "blob", "read_file", "helm", "k8s_yaml"),
            *("k8s_kind", "k8s_resource", "local_resource", "local"),
        ]
        found: dict[str, Callable[..., Any]] = {name: getattr(self, name) for name in names}
        found["run"] = self.run_step
        for name in ("define_string", "define_bool", "define_string_list", "parse"):
            found[f"_config_{name}"] = getattr(self, f"config_{name}")
        return found


_PRELUDE = """
config = struct(
    define_string=_config_define_string,
    define_bool=_config_define_bool,
    define_string_list=_config_define_string_list,
    parse=_config_parse,
)
"""


def run_tiltfile(
    path: Path,
    *,
    helm: Path,
    context: str = "kind-algoedge",
    args: Mapping[str, Any] | None = None,
) -> TiltRun:
    """Evaluate the Tiltfile at ``path`` as ``tilt up -- ARGS`` would against ``context``;
    :class:`TiltfileError` carries Starlark's message when it fails."""
    import starlark

    run = TiltRun(root=path.parent, context=context)
    builtins = _Builtins(run=run, helm_binary=helm, args=dict(args or {}))
    module = starlark.Module()
    for name, implementation in builtins.callables().items():
        module.add_callable(name, implementation)
    module["TRIGGER_MODE_AUTO"] = TRIGGER_MODE_AUTO
    module["TRIGGER_MODE_MANUAL"] = TRIGGER_MODE_MANUAL
    extensions = [starlark.LibraryExtension.StructType, starlark.LibraryExtension.Print]
    globals_ = starlark.Globals.extended_by(extensions)
    dialect = starlark.Dialect.extended()
    try:
        starlark.eval(module, starlark.parse("prelude", _PRELUDE, dialect=dialect), globals_)
        source = starlark.parse(str(path), path.read_text(), dialect=dialect)
        starlark.eval(module, source, globals_)
    except starlark.StarlarkError as error:
        raise TiltfileError(str(error)) from None
    return run
