#!/usr/bin/env bash
# Build the monitoring test tools: prometheus and promtool from the pinned Go tool module in
# prometheus/ (service discovery plugins left out with the upstream build tag remove_all_sd:
# the tests use static scrape configs only; no built-in web UI assets, the API is enough),
# and a virtual environment with spreaker's prometheus-pgbouncer-exporter (PyPI), the one
# pgBouncer exporter obtainable here whose pool metrics carry prometheus-community
# pgbouncer_exporter's names (that exporter's module is refused by the Go proxy).
# redis_exporter comes from Debian (prometheus-redis-exporter, scripts/system-deps.sh): the
# Go proxy refuses oliver006/redis_exporter's sources too.
#
# Cached outside the repo in
#   ${ALGOEDGE_CACHE:-$HOME/.cache/algoedge}/monitoring/<version-key>/bin
# where <version-key> hashes every pin (go.mod, go.sum, tags, ldflags, this script, the Go
# version), so a changed pin builds into a new directory and an unchanged one is reused at
# once. The bin directory (prometheus, promtool, pgbouncer-exporter) is printed as the last
# line of stdout; progress and build times go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:${PATH}"
fi
if ! command -v go >/dev/null; then
    echo "build.sh: no 'go' on PATH (Go >= 1.26 is needed to build prometheus)" >&2
    exit 1
fi

export GOFLAGS="${GOFLAGS:+${GOFLAGS} }-trimpath -mod=readonly"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0

tags="remove_all_sd"
ldflags="-s -w"
# The exporter and its dependencies, pinned. psycopg2-binary provides the psycopg2 module the
# exporter imports; its own pins (psycopg2 2.8.5, prometheus_client 0.8) do not build on 3.11.
pgbouncer_exporter_pins=(
    prometheus-pgbouncer-exporter==2.1.2
    psycopg2-binary==2.9.10
    prometheus-client==0.21.1
    python-json-logger==2.0.7
    PyYAML==6.0.2
)

version_key="$(
    {
        go env GOVERSION GOOS GOARCH
        echo "GOFLAGS=${GOFLAGS} CGO_ENABLED=${CGO_ENABLED} tags=${tags} ldflags=${ldflags}"
        echo "${pgbouncer_exporter_pins[*]}"
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
        cat "${here}/prometheus/go.mod" "${here}/prometheus/go.sum"
    } | sha256sum | cut -c1-16
)"
cache_root="${ALGOEDGE_CACHE:-${HOME}/.cache/algoedge}/monitoring"
key_dir="${cache_root}/${version_key}"
bin_dir="${key_dir}/bin"
mkdir -p "${key_dir}"

# One build per key at a time (make and a pytest session may race); the others wait.
exec 9>"${key_dir}/.lock"
flock 9

if [[ ! -f "${key_dir}/complete" ]]; then
    rm -rf "${bin_dir}" "${key_dir}/bin.partial" "${key_dir}/pgbouncer-exporter"
    mkdir -p "${key_dir}/bin.partial"
    echo "build.sh: building prometheus, promtool ..." >&2
    start=${SECONDS}
    (cd "${here}/prometheus" &&
        nice -n 10 go build -tags "${tags}" -ldflags "${ldflags}" -o "${key_dir}/bin.partial/" \
            github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
    echo "build.sh: built prometheus, promtool in $((SECONDS - start)) s" | tee -a "${key_dir}/build-times.txt" >&2
    start=${SECONDS}
    python3.11 -m venv "${key_dir}/pgbouncer-exporter"
    "${key_dir}/pgbouncer-exporter/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "${pgbouncer_exporter_pins[@]}"
    ln -s ../pgbouncer-exporter/bin/pgbouncer-exporter "${key_dir}/bin.partial/pgbouncer-exporter"
    echo "build.sh: installed pgbouncer-exporter in $((SECONDS - start)) s" | tee -a "${key_dir}/build-times.txt" >&2
    mv "${key_dir}/bin.partial" "${bin_dir}"
    touch "${key_dir}/complete"
fi

echo "${bin_dir}"
