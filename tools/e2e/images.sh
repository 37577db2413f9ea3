#!/usr/bin/env bash
# Builds the images the upstream conformance suite runs (see package
# images/conformance for what each is made of) as image archives, and
# prints their directory. Needs root (mmdebstrap) and the Debian mirror.
#
#   1. Debian roots for agnhost, busybox and nginx, made by
#      tools/e2e/roots.sh with mmdebstrap from Debian's packages (about a
#      minute each), cached in $ECOM_E2E_CACHE/roots-<hash of that script>.
#   2. The archives, by images/cmd/mkconformance from those roots, the
#      binaries tools/e2e/build.sh builds and this repository's pause,
#      etcd and CoreDNS, cached in $ECOM_E2E_CACHE/images-<hash of every
#      input>.
# Both are built in a temporary directory renamed into place, under a lock.
#
# usage: tools/e2e/images.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_E2E_CACHE:-/var/cache/ecom-agent-e2e}
log() { echo "e2e-images: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.images.lock"
flock 9

# ---- 1. The Debian roots (tools/e2e/roots.sh, cached by its own hash).
roots=$("$here/roots.sh")
rootkey=$(basename "$roots")

# ---- 2. The archives.
bins=$("$here/build.sh")
kubesrc=$(cd "$here" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
# Every input: the roots, the suite's binaries, Go, this script, the
# epoch, and the images' sources (untracked files too) but those of the
# platform's images, which mkconformance does not build. Each command of
# the group must succeed (set -e does not reach into $(...)).
key=$( set -e; { echo "$rootkey"; cat "$bins/.built"; go version; cat "$here/images.sh"; echo "${SOURCE_DATE_EPOCH:-}";
	cd "$repo" && git ls-files -z --cached --others --exclude-standard -- images go.mod go.sum \
		':!images/platform' ':!images/cmd/mkplatform' ':!images/prometheus' ':!images/kube-state-metrics' ':!images/log-shipper' |
		xargs -0 cat; } | sha256sum | cut -c1-16)
[[ ${#key} == 16 ]] || { log "could not compute the cache key"; exit 1; }
out=$cache/images-$key
if [[ ! -f $out/complete ]]; then
	tmp=$(mktemp -d "$cache/.images-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "writing the archives"
	(cd "$repo" && go run ./images/cmd/mkconformance -bin-dir "$bins" -roots "$roots" -kube-src "$kubesrc" -out "$tmp" -repo "$repo") >&2
	touch "$tmp/complete"
	rm -rf "$out"
	mv "$tmp" "$out"
	trap - EXIT
	# Older builds of the archives: the newest other one is kept (hosts
	# still up, `conformance -keep`, bind-mount it at every boot), the
	# rest removed. On a fresh machine there is no other (grep then finds
	# nothing, which is no failure: under pipefail it failed make test
	# after the archives were written).
	# shellcheck disable=SC2010 # the names are ours: images-<hex key>
	ls -dt "$cache"/images-* | { grep -vxF "$out" || true; } | tail -n +2 | while read -r old; do rm -rf "$old"; done
fi
echo "$out"
