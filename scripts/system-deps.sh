#!/usr/bin/env bash
# Make sure the Debian packages the tests and `make dev` start for real are present:
# PostgreSQL server binaries, redis-server, pgbouncer and prometheus-redis-exporter (the
# monitoring tests' Redis exporter); podman, debootstrap, containerd, runc, the CNI plugins,
# iptables and ipset (kube-router's NetworkPolicy enforcement) for the images and the real node.
# Installs them with apt-get when missing and running as root; otherwise says exactly what to
# install. Idempotent and quick when everything is there (it only looks for the binaries).
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# oliver006/redis_exporter for the monitoring tests (the Go proxy refuses its module here).
command -v prometheus-redis-exporter >/dev/null || missing+=(prometheus-redis-exporter)
# The images (images/build.sh) and the real node (devtools/controlplane/realnode.py).
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v ipset >/dev/null || [ -x /usr/sbin/ipset ] || missing+=(ipset)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: missing Debian packages: ${missing[*]}" >&2
  echo "system-deps: run as root, or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
