# AlgoEdge developer entry points. The two that matter: `make dev` (run) and `make test` (test).
# Everything is installed on demand and idempotently; builds are cached outside the repo in
# $(CACHE_DIR) (default ~/.cache/algoedge; override with ALGOEDGE_CACHE).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR := $(or $(ALGOEDGE_CACHE),$(HOME)/.cache/algoedge)
UV_VERSION := 0.13.8
UV_HOME := $(CACHE_DIR)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
# Never let uv fetch an interpreter: the project runs on the machine's Python 3.11.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := 3.11
PY := .venv/bin/python
BRIDGE_PY := .venv-bridge/bin/python
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV):
	python3.11 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.PHONY: system-deps
system-deps: ## install postgresql, redis-server, pgbouncer (apt-get, as root) when missing
	@scripts/system-deps.sh

.PHONY: venv
venv: $(UV) ## the main environment (.venv): api, worker, operator, dev tools
	@$(UV) sync --locked --quiet --extra api --extra worker --extra operator --extra dev

.PHONY: bridge-venv
bridge-venv: $(UV) ## the bridge environment (.venv-bridge): metaapi-cloud-sdk with python-socketio 4
	@UV_PROJECT_ENVIRONMENT=.venv-bridge $(UV) sync --locked --quiet --extra bridge --extra test

.PHONY: lock
lock: $(UV) ## re-resolve uv.lock after changing pyproject.toml
	$(UV) lock

.PHONY: charts
charts: controlplane ## lint the Helm charts (algoedge-crds, algoedge-operator, algoedge-tenant) and render them
	@helm="$$(devtools/controlplane/build.sh | tail -1)/helm"; \
	  "$$helm" lint --strict charts/algoedge-crds charts/algoedge-operator; \
	  "$$helm" template algoedge-crds charts/algoedge-crds >/dev/null; \
	  "$$helm" template algoedge-operator charts/algoedge-operator >/dev/null; \
	  for values in charts/algoedge-tenant/ci/*-values.yaml; do \
	    "$$helm" lint --strict charts/algoedge-tenant --values "$$values"; \
	    "$$helm" template acme charts/algoedge-tenant --values "$$values" >/dev/null; \
	  done

.PHONY: crd
crd: venv ## write the CRD's descriptions (from the operator's model) and the tenant chart's spec schema (devtools/crd.py)
	$(PY) -m devtools.crd

.PHONY: tilt-check
tilt-check: controlplane ## Tilt's own reading of the Tiltfile (`tilt alpha tiltfile-result`; needs tilt and a kind context)
	@if ! command -v tilt >/dev/null; then \
	  echo "tilt-check: tilt is not installed (it is on no package registry): install it from" \
	       "https://docs.tilt.dev/install.html, then make kind-up (the Tiltfile accepts only kind" \
	       "contexts) and run make tilt-check again. Without tilt, tests/unit/test_tiltfile.py runs" \
	       "the Tiltfile in a Starlark interpreter with a stand-in for Tilt's built-ins" \
	       "(.venv/bin/python -m pytest tests/unit/test_tiltfile.py): close, not the same." >&2; \
	  exit 1; \
	fi
	@mkdir -p .run
	PATH="$$(devtools/controlplane/build.sh | tail -1):$$PATH" tilt alpha tiltfile-result --file Tiltfile >.run/tiltfile-result.json
	@echo "tilt-check: Tilt evaluated the Tiltfile; its result is in .run/tiltfile-result.json"

.PHONY: lint
lint: venv charts ## ruff lint and format check, import-linter contracts (.importlinter), helm lint
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	PYTHONPATH=. .venv/bin/lint-imports --no-cache

.PHONY: fmt
fmt: venv ## apply ruff's formatting and safe fixes
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

.PHONY: typecheck
typecheck: venv ## mypy --strict over app/, operator/, devtools/, tests/ and bench/
	.venv/bin/mypy app/algoedge operator/algoedge_operator devtools tests bench

.PHONY: controlplane
controlplane: ## build etcd, kube-apiserver/-controller-manager/-scheduler, kubectl, helm, kwok from pinned Go modules (cached)
	@devtools/controlplane/build.sh >/dev/null

.PHONY: monitoring-tools
monitoring-tools: ## build prometheus and promtool from pinned Go modules and the pgBouncer exporter's venv (cached)
	@devtools/monitoring/build.sh >/dev/null

.PHONY: images
images: system-deps ## build the images with podman on a Debian base made here (cached; images/build.sh)
	@images/build.sh >/dev/null

.PHONY: cluster-up
cluster-up: venv controlplane ## start the local control plane in .run/cluster (REAL_NODE=1: with a real node; prints KUBECONFIG and .run/bin links)
	$(PY) -m devtools.controlplane.cluster up --dir .run/cluster $(if $(REAL_NODE),--real-node --timeout 600)

.PHONY: cluster-down
cluster-down: venv ## stop the local control plane in .run/cluster
	$(PY) -m devtools.controlplane.cluster down --dir .run/cluster

# kopf's scope follows ALGOEDGE_OPERATOR_NAMESPACES (comma-separated; unset: every namespace).
OPERATOR_COMMA := ,
OPERATOR_SCOPE = $(if $(ALGOEDGE_OPERATOR_NAMESPACES),$(addprefix --namespace=,$(subst $(OPERATOR_COMMA), ,$(ALGOEDGE_OPERATOR_NAMESPACES))),--all-namespaces)

.PHONY: operator
operator: venv ## run the AlgoEdgeTenant operator against $$KUBECONFIG (applies crds/ first; ALGOEDGE_OPERATOR_NAMESPACES=a,b watches only those)
	$(or $(KUBECTL),kubectl) apply --server-side -f crds/
	.venv/bin/kopf run $(OPERATOR_SCOPE) --standalone -m algoedge_operator

.PHONY: kind-up
kind-up: venv controlplane ## kind cluster, images built (docker) and loaded, CRDs, operator, sample tenant (needs Docker and kind; KIND_ARGS=--cluster-only before tilt up)
	$(PY) -m devtools.kind up $(KIND_ARGS)

.PHONY: kind-down
kind-down: venv ## delete the kind cluster of make kind-up
	$(PY) -m devtools.kind down

.PHONY: test
test: system-deps venv bridge-venv controlplane monitoring-tools images lint typecheck ## install what is missing, check, run every test
	UV_BIN=$(UV) $(PY) -m pytest tests/unit tests/integration tests/e2e --ignore=tests/e2e/realnode $(PYTEST_ARGS)
	$(BRIDGE_PY) -m pytest tests/bridge $(PYTEST_ARGS)
	@# The real node (containerd, kubelet, real pods): its own session, its own bound.
	timeout 1800 $(PY) -m pytest tests/e2e/realnode --real-node $(PYTEST_ARGS)

.PHONY: dev
dev: system-deps venv bridge-venv controlplane $(if $(REAL_NODE),images) ## start Postgres, Redis, pgBouncer, the API, the local control plane and the operator in .run/ (REAL_NODE=1: the tenant's pods really run, on the real node; Ctrl-C stops all)
	$(PY) -m devtools.dev --dir .run $(if $(REAL_NODE),--real-node) $(DEV_ARGS)

.PHONY: bench
bench: system-deps venv ## API benchmark at saturation: hello ceiling, baseline, api, api-me (GET /me only), with the ratios (BENCH_ARGS to add options)
	$(PY) -m bench.api_load --users 500 --think 0.1 --targets hello,baseline,api,api-me $(BENCH_ARGS)

.PHONY: clean
clean: ## remove the environments and .run/ (the cache in CACHE_DIR stays)
	rm -rf .venv .venv-bridge .run .mypy_cache .ruff_cache .pytest_cache
