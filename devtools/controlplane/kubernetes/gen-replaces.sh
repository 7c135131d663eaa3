#!/usr/bin/env bash
# Regenerate go.mod's staging replaces for the pinned k8s.io/kubernetes release.
#
# k8s.io/kubernetes is not meant to be used as a library: its go.mod requires every
# staging module (k8s.io/api, k8s.io/client-go, ...) at v0.0.0 and replaces it with
# ./staging/src/k8s.io/X, and replaces of a dependency are ignored by Go. So this
# module must replace each of them with the published tag vMAJOR-1.MINOR.PATCH
# (v1.37.2 -> v0.37.2). The list is read from the release's own go.mod, never typed.
#
# Usage: devtools/controlplane/kubernetes/gen-replaces.sh [vX.Y.Z]
#   default version: the k8s.io/kubernetes requirement already in go.mod.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

version="${1:-$(go mod edit -json | python3 -c '
import json, sys
mod = json.load(sys.stdin)
print(next(r["Version"] for r in mod["Require"] if r["Path"] == "k8s.io/kubernetes"))
')}"
staging_version="v0.${version#v1.}"

upstream_gomod="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${version}" | python3 -c '
import json, sys
print(json.load(sys.stdin)["GoMod"])
')"

# Lines like "	k8s.io/api => ./staging/src/k8s.io/api" inside the replace block.
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "${upstream_gomod}")
if [[ ${#staging[@]} -eq 0 ]]; then
    echo "gen-replaces: no staging replaces found in ${upstream_gomod}" >&2
    exit 1
fi

# Drop old k8s.io staging replaces, then add one per staging module of this release.
for old in $(go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    print(r["Old"]["Path"])
'); do
    go mod edit -dropreplace="${old}"
done
args=(-require="k8s.io/kubernetes@${version}")
for module in "${staging[@]}"; do
    args+=(-replace="${module}=${module}@${staging_version}")
done
go mod edit "${args[@]}"
echo "gen-replaces: ${#staging[@]} staging modules of k8s.io/kubernetes ${version} -> ${staging_version}" >&2
go mod tidy
