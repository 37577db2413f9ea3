#!/usr/bin/env bash
# Builds the images of the e-commerce platform the agent seeds (package
# images/platform) as image archives and prints their directory. Needs
# root (mmdebstrap) and the Debian mirror.
#
#   1. Debian roots, one per image, made by tools/platform/roots.sh from
#      Debian 12's packages, cached in $ECOM_PLATFORM_CACHE/roots-<hash of
#      that script>.
#   2. The archives, by images/cmd/mkplatform from those roots, the apps
#      in platform/ and the Go programs of images/kube-state-metrics and
#      images/log-shipper, cached in $ECOM_PLATFORM_CACHE/images-<hash of
#      every input>.
# Both are built in a temporary directory renamed into place, under a lock.
#
# usage: tools/platform/images.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_PLATFORM_CACHE:-/var/cache/ecom-agent-platform}
GO=${GO:-go}
log() { echo "platform-images: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.images.lock"
flock 9

roots=$("$here/roots.sh")
rootkey=$(basename "$roots")
# Every input: the roots, Go, this script, the epoch, and the sources
# (untracked files too). Each command of the group must succeed (set -e
# does not reach into $(...)).
key=$( set -e; { echo "$rootkey"; "$GO" version; cat "$here/images.sh"; echo "${SOURCE_DATE_EPOCH:-}";
	cd "$repo" && git ls-files -z --cached --others --exclude-standard images platform go.mod go.sum | xargs -0 cat; } | sha256sum | cut -c1-16)
[[ ${#key} == 16 ]] || { log "could not compute the cache key"; exit 1; }
out=$cache/images-$key
if [[ ! -f $out/complete ]]; then
	tmp=$(mktemp -d "$cache/.images-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	log "writing the archives"
	(cd "$repo" && "$GO" run ./images/cmd/mkplatform -go "$GO" -roots "$roots" -out "$tmp" -repo "$repo") >&2
	cp "$roots/packages.txt" "$tmp/packages.txt"
	touch "$tmp/complete"
	rm -rf "$out"
	mv "$tmp" "$out"
	trap - EXIT
	# The newest other build is kept (hosts still up may bind-mount it),
	# the rest removed. There may be no other (grep finds nothing then,
	# which is no failure).
	# shellcheck disable=SC2010 # the names are ours: images-<hex key>
	ls -dt "$cache"/images-* | { grep -vxF "$out" || true; } | tail -n +2 | while read -r old; do rm -rf "$old"; done
fi
echo "$out"
