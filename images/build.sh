#!/usr/bin/env bash
# Build the AlgoEdge images with podman, on a Debian bookworm base made here (no registry needed):
#
#   localhost/algoedge-base:bookworm   debootstrap (minbase + python3 3.11, pip, ca-certificates)
#                                      from the apt mirror this machine uses, `podman import`ed
#   localhost/algoedge:dev             images/Dockerfile --target app      (api/worker/beat/migrate)
#   localhost/algoedge-bridge:dev      images/Dockerfile --target bridge
#   localhost/algoedge-operator:dev    images/Dockerfile --target operator
#   localhost/algoedge-redis:7.0       images/Dockerfile --target redis     (Debian's redis-server 7.0)
#   localhost/algoedge-pgbouncer:1.18  images/Dockerfile --target pgbouncer (Debian's pgbouncer 1.18)
#   localhost/algoedge-pause:1         images/Dockerfile --target pause     (the real node's sandbox)
#   localhost/algoedge-smtp-sink:1     images/Dockerfile --target smtp-sink (Debian's aiosmtpd: e2e mail)
#
# and writes all of them to one docker-archive, ${cache}/images/<key>/images.tar, which the real
# node imports into containerd (`ctr -n k8s.io images import`). The last line of stdout is that
# archive's path; progress goes to stderr.
#
# Cached twice: the base root filesystem under ${cache}/images/base-<key>.tar (the key hashes the
# suite, the mirror, the package list and the recipe's version), and the whole set under
# ${cache}/images/<key>/ where <key> hashes every input of the build (this script, the
# Dockerfiles, pyproject.toml, uv.lock, README.md, app/ and operator/ sources). An unchanged key
# whose images are still in podman's store is skipped at once.
#
# Podman runs as root with runc and cgroupfs, explicit rlimits (root here lacks
# CAP_SYS_RESOURCE, so podman's default of raising them fails) and the host network.
#
# Environment:
#   ALGOEDGE_CACHE  cache root (default: $HOME/.cache/algoedge)
#   DEBIAN_MIRROR   default: the first http(s) URI of apt's sources, else deb.debian.org
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
cache="${ALGOEDGE_CACHE:-${HOME}/.cache/algoedge}/images"
suite=bookworm
base_packages=python3,python3-pip,ca-certificates
base_image=localhost/algoedge-base:${suite}

for tool in podman debootstrap; do
    if ! command -v "${tool}" >/dev/null; then
        echo "images/build.sh: no '${tool}' (run scripts/system-deps.sh as root)" >&2
        exit 1
    fi
done

podman() {
    command podman --runtime runc --cgroup-manager cgroupfs "$@"
}

mirror="${DEBIAN_MIRROR:-$(
    sed -n 's#^URIs:[[:space:]]*\(https\?://[^[:space:]]*/debian\)[[:space:]]*$#\1#p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1
)}"
mirror="${mirror:-http://deb.debian.org/debian}"

mkdir -p "${cache}"
exec 9>"${cache}/.lock"
flock 9

# ---- the base ------------------------------------------------------------------------------
# Bump base_recipe when the steps below change (the key must not follow every edit of this file:
# a debootstrap takes minutes).
base_recipe=1
# The base trusts what this host trusts on top of Debian's bundle (an intercepting proxy's CA in
# /usr/local/share/ca-certificates), or pip and uv inside the builds could not reach PyPI.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[[ -e "${extra_cas[0]}" ]] || extra_cas=()
base_key="$(
    printf '%s\n' "${suite}" "${mirror}" "${base_packages}" "${base_recipe}"
    [[ ${#extra_cas[@]} -eq 0 ]] || cat "${extra_cas[@]}"
)"
base_key="$(sha256sum <<<"${base_key}" | cut -c1-16)"
base_tar="${cache}/base-${base_key}.tar"
if [[ ! -f "${base_tar}" ]]; then
    echo "images/build.sh: debootstrap ${suite} from ${mirror} ..." >&2
    start=${SECONDS}
    rootfs="${cache}/base-${base_key}.rootfs"
    rm -rf "${rootfs}"
    debootstrap --variant=minbase --include="${base_packages}" "${suite}" "${rootfs}" "${mirror}" >&2
    if [[ ${#extra_cas[@]} -gt 0 ]]; then
        cp "${extra_cas[@]}" "${rootfs}/usr/local/share/ca-certificates/"
        chroot "${rootfs}" update-ca-certificates >&2
    fi
    # Package scripts must not start services inside an image build.
    printf '#!/bin/sh\nexit 101\n' >"${rootfs}/usr/sbin/policy-rc.d"
    chmod 755 "${rootfs}/usr/sbin/policy-rc.d"
    # Smaller and reproducible-ish: no apt lists, no caches, no docs.
    rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin \
        "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/*
    tar --numeric-owner -C "${rootfs}" -cf "${base_tar}.partial" .
    mv "${base_tar}.partial" "${base_tar}"
    rm -rf "${rootfs}"
    echo "images/build.sh: base made in $((SECONDS - start)) s" >&2
fi
base_id_file="${cache}/base-${base_key}.imported"
if ! podman image exists "${base_image}" ||
    [[ "$(cat "${base_id_file}" 2>/dev/null)" != "$(podman image inspect --format '{{.Id}}' "${base_image}")" ]]; then
    podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
        "${base_tar}" "${base_image}" >/dev/null
    podman image inspect --format '{{.Id}}' "${base_image}" >"${base_id_file}"
fi

# ---- the images ----------------------------------------------------------------------------
images=(
    "app localhost/algoedge:dev Dockerfile"
    "bridge localhost/algoedge-bridge:dev Dockerfile"
    "operator localhost/algoedge-operator:dev Dockerfile"
    "redis localhost/algoedge-redis:7.0 Dockerfile"
    "pgbouncer localhost/algoedge-pgbouncer:1.18 Dockerfile"
    "pause localhost/algoedge-pause:1 Dockerfile"
    "smtp-sink localhost/algoedge-smtp-sink:1 Dockerfile"
)
key="$(
    {
        cat "${base_id_file}"
        cd "${repo}"
        find images pyproject.toml uv.lock README.md app operator -type f \
            -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)"
key_dir="${cache}/${key}"
archive="${key_dir}/images.tar"
names=()
for spec in "${images[@]}"; do
    read -r _ name _ <<<"${spec}"
    names+=("${name}")
done

all_present() {
    local name
    for name in "${names[@]}"; do
        [[ "$(podman image inspect --format '{{index .Labels "io.algoedge.inputs"}}' "${name}" 2>/dev/null)" == "${key}" ]] ||
            return 1
    done
}

if [[ -f "${archive}" ]] && all_present; then
    echo "images/build.sh: images ${key} are current" >&2
    echo "${archive}"
    exit 0
fi

build_args=(--network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 --layers
    --build-arg "PYTHON_IMAGE=${base_image}" --build-arg PYTHON=/usr/bin/python3.11
    --label "io.algoedge.inputs=${key}")
for spec in "${images[@]}"; do
    read -r target name dockerfile <<<"${spec}"
    start=${SECONDS}
    echo "images/build.sh: building ${name} ..." >&2
    podman build "${build_args[@]}" --target "${target}" -f "${here}/${dockerfile}" -t "${name}" "${repo}" >&2
    echo "images/build.sh: built ${name} in $((SECONDS - start)) s" >&2
done

mkdir -p "${key_dir}"
rm -f "${archive}.partial"
podman save --multi-image-archive --format docker-archive -o "${archive}.partial" "${names[@]}" >&2
mv "${archive}.partial" "${archive}"
# Older archives are useless once their key changed; keep only this one.
find "${cache}" -mindepth 1 -maxdepth 1 -type d -not -name "${key}" -not -name '*.rootfs' \
    -exec rm -rf {} + 2>/dev/null || true
echo "${archive}"
