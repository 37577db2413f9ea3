#!/usr/bin/env bash
# Builds the upstream Kubernetes end-to-end suite and what the conformance
# run needs beside it, from the k8s.io/kubernetes module at the version
# pinned in go.mod (the same as tools/kube), into a cache directory keyed
# by that version and a hash of this module (outside the repo):
#   e2e.test          k8s.io/kubernetes/test/e2e, the suite itself
#   ginkgo            its runner (parallel processes, JUnit reports)
#   agnhost           k8s.io/kubernetes/test/images/agnhost, the program of
#                     most conformance images (tools/e2e/images.sh packs it)
#   sample-apiserver  k8s.io/sample-apiserver, for the aggregator test
# A warm cache costs a second; cold, 15 to 25 minutes on 2 cores (most of
# it e2e.test; the module cache is shared with tools/kube).
#
# usage: tools/e2e/build.sh [OUT_DIR]   (default: $ECOM_E2E_CACHE/<version>)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '($1=="require" && $2=="k8s.io/kubernetes") {print $3; exit} ($1=="k8s.io/kubernetes" && $2 ~ /^v/) {print $2; exit}' "$here/go.mod")
cache=${ECOM_E2E_CACHE:-/var/cache/ecom-agent-e2e}
out=${1:-$cache/$version}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
bins=(e2e.test ginkgo agnhost sample-apiserver)

if [[ -f "$out/.built" && "$(cat "$out/.built")" == "$key" ]]; then
	echo "$out"
	exit 0
fi
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if [[ -f "$out/.built" && "$(cat "$out/.built")" == "$key" ]]; then
	echo "$out"
	exit 0
fi
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$version \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
tmp=$(mktemp -d "$out/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd "$here"
export CGO_ENABLED=0
echo "building e2e.test $version" >&2
go test -c -trimpath -ldflags "$ldflags" -o "$tmp/e2e.test" k8s.io/kubernetes/test/e2e
echo "building ginkgo" >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
echo "building agnhost" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/agnhost" k8s.io/kubernetes/test/images/agnhost
echo "building sample-apiserver" >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/sample-apiserver" k8s.io/sample-apiserver
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$out/$b"; done
echo "$key" > "$out/.built"
echo "built ${bins[*]} $version in $(( $(date +%s) - start ))s" >&2
echo "$out"
