#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm, kwok; kubelet, kube-proxy and kube-router for the real node) from
# the pinned Go tool modules beside this file.
#
# Binaries are cached outside the repo in
#   ${ALGOEDGE_CACHE:-$HOME/.cache/algoedge}/controlplane/<version-key>/bin
# where <version-key> hashes every pin (go.mod, go.sum, ldflags, this script, the Go
# version), so a changed pin builds into a new directory and an unchanged one is reused
# at once. The bin directory is printed as the last line of stdout; progress and build
# times go to stderr.
#
# Environment:
#   ALGOEDGE_CACHE  cache root (default: $HOME/.cache/algoedge)
#   GOFLAGS         extended with -trimpath (reproducible paths in binaries)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
modules=(kubernetes etcd helm kwok kube-router)

# Non-interactive shells (CI, make) may not have the Go install's bin on PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="/usr/local/go/bin:${PATH}"
fi
if ! command -v go >/dev/null; then
    echo "build.sh: no 'go' on PATH (Go >= 1.26 is needed to build the control plane)" >&2
    exit 1
fi

export GOFLAGS="${GOFLAGS:+${GOFLAGS} }-trimpath -mod=readonly"
# Tool modules must build with the installed Go; never fetch another toolchain silently.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0

module_version() { # module_dir module_path -> pinned version
    (cd "${here}/$1" && go list -m -f '{{.Version}}' "$2")
}

ldflags_for() { # component -> -ldflags value (version stamps)
    local version major minor
    case "$1" in
    kubernetes)
        version="$(module_version kubernetes k8s.io/kubernetes)"
        major="${version#v}" && major="${major%%.*}"
        minor="${version#v*.}" && minor="${minor%%.*}"
        local flags=(-s -w)
        # Without these /version says v0.0.0 and Helm charts' kubeVersion checks fail.
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            flags+=(-X "${pkg}.gitVersion=${version}" -X "${pkg}.gitMajor=${major}" -X "${pkg}.gitMinor=${minor}"
                -X "${pkg}.gitTreeState=clean" -X "${pkg}.buildDate=1970-01-01T00:00:00Z")
        done
        echo "${flags[*]}"
        ;;
    etcd)
        echo "-s -w"
        ;;
    helm)
        version="$(module_version helm helm.sh/helm/v3)"
        # helm's Makefile derives the default Kubernetes version from its client-go pin.
        local client_go
        client_go="$(module_version helm k8s.io/client-go)"
        major="${client_go#v}" && major="$((${major%%.*} + 1))" # v0.37.0 -> 1
        minor="${client_go#v*.}" && minor="${minor%%.*}"        # v0.37.0 -> 37
        echo "-s -w -X helm.sh/helm/v3/internal/version.version=${version}" \
            "-X helm.sh/helm/v3/internal/version.metadata=" \
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${major}" \
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}" \
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${major}" \
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
        ;;
    kwok)
        version="$(module_version kwok sigs.k8s.io/kwok)"
        echo "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}"
        ;;
    kube-router)
        version="$(module_version kube-router github.com/cloudnativelabs/kube-router/v2)"
        echo "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=${version}" \
            "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z"
        ;;
    esac
}

packages_for() { # component -> main packages to build in one go build
    case "$1" in
    kubernetes)
        echo k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
            k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
        ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
    kube-router) echo github.com/cloudnativelabs/kube-router/v2/cmd/kube-router ;;
    esac
}

declare -A ldflags
for component in "${modules[@]}"; do
    ldflags[${component}]="$(ldflags_for "${component}")"
done

version_key="$(
    {
        go env GOVERSION GOOS GOARCH
        echo "GOFLAGS=${GOFLAGS} CGO_ENABLED=${CGO_ENABLED}"
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
        for component in "${modules[@]}"; do
            echo "${component}: ${ldflags[${component}]}"
            cat "${here}/${component}/go.mod" "${here}/${component}/go.sum"
        done
    } | sha256sum | cut -c1-16
)"
cache_root="${ALGOEDGE_CACHE:-${HOME}/.cache/algoedge}/controlplane"
key_dir="${cache_root}/${version_key}"
bin_dir="${key_dir}/bin"
mkdir -p "${key_dir}"

# One build per key at a time (make and a pytest session may race); the others wait.
exec 9>"${key_dir}/.lock"
flock 9

if [[ ! -f "${key_dir}/complete" ]]; then
    rm -rf "${bin_dir}" "${key_dir}/bin.partial"
    mkdir -p "${key_dir}/bin.partial"
    for component in "${modules[@]}"; do
        if [[ "${component}" == etcd ]]; then
            out="${key_dir}/bin.partial/etcd" # package path ends in /v3; name the binary
        else
            out="${key_dir}/bin.partial/"
        fi
        echo "build.sh: building ${component} ..." >&2
        start=${SECONDS}
        # shellcheck disable=SC2046 # word splitting of the package list is intended
        (cd "${here}/${component}" &&
            nice -n 10 go build -ldflags "${ldflags[${component}]}" -o "${out}" $(packages_for "${component}"))
        echo "build.sh: built ${component} in $((SECONDS - start)) s" | tee -a "${key_dir}/build-times.txt" >&2
    done
    mv "${key_dir}/bin.partial" "${bin_dir}"
    touch "${key_dir}/complete"
fi

echo "${bin_dir}"
