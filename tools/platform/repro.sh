#!/usr/bin/env bash
# Proves the platform's images reproducible, as packaging/deb's tests do
# the packages: builds everything again from scratch (tools/platform/roots.sh
# then tools/platform/images.sh, against an empty temporary cache) and
# compares, file by file, the sha256 of every Debian root tar and every
# image archive with the cached build that tools/platform/images.sh prints
# (built first if missing). Both builds get the same inputs: the same
# sources, the same Go, and the roots the same SOURCE_DATE_EPOCH (the one
# the cached roots recorded in source-date-epoch).
#
# Debian's mirror is an input too: when a package moved between the two
# builds (packages.txt differs), that is a different input, not a
# reproducibility failure, and the script says so and stops there.
#
# Prints a table (file, cached sha256, fresh sha256, same/DIFFERENT), and
# for a root tar that differs, the first paths that do. The scratch cache
# (in the cache's parent directory, or $ECOM_PLATFORM_REPRO_TMP; about
# 2 GB) is removed at exit. Needs root and the Debian mirror, like
# roots.sh; about a quarter of an hour on 2 cores with Go's build cache
# warm (docs/testing.md).
#
# usage: tools/platform/repro.sh
# exit status: 0 every file the same, 1 a file differs (or a build
# failed), 2 the mirror moved between the two builds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_PLATFORM_CACHE:-/var/cache/ecom-agent-platform}
log() { echo "platform-repro: $*" >&2; }
start=$SECONDS

log "the cached build (tools/platform/images.sh, built first if missing)"
images=$("$here/images.sh")
# Built by images.sh just now or before: this prints its directory.
roots=$("$here/roots.sh")
if [[ -f $roots/source-date-epoch ]]; then
	epoch=$(cat "$roots/source-date-epoch")
else
	# As roots.sh derives it when SOURCE_DATE_EPOCH is unset.
	epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct -- tools/platform/roots.sh 2>/dev/null || true)}
	epoch=${epoch:-0}
fi
log "cached: $roots, $images (roots dated SOURCE_DATE_EPOCH=$epoch)"

mkdir -p "$(dirname "$cache")"
scratch=$(mktemp -d "${ECOM_PLATFORM_REPRO_TMP:-$(dirname "$cache")}/ecom-agent-platform-repro.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
log "the fresh build in $scratch"
t0=$SECONDS
fresh_roots=$(ECOM_PLATFORM_CACHE=$scratch SOURCE_DATE_EPOCH=$epoch "$here/roots.sh")
log "fresh roots in $((SECONDS - t0)) s"

# The mirror first: different package versions are different inputs.
if ! moved=$(diff -u --label cached --label fresh "$roots/packages.txt" "$fresh_roots/packages.txt"); then
	log "the mirror moved: Debian's packages differ between the two builds, so the inputs do"
	echo "the mirror moved:"
	grep '^[-+][^-+]' <<<"$moved" | head -n 40
	echo "not a reproducibility failure: build the cached roots again (remove $roots) and run this again"
	exit 2
fi

t0=$SECONDS
# The environment of the cached build otherwise (images.sh keys on
# SOURCE_DATE_EPOCH, and mkplatform dates the archives with it).
fresh_images=$(ECOM_PLATFORM_CACHE=$scratch "$here/images.sh")
log "fresh archives in $((SECONDS - t0)) s"
if [[ $(basename "$fresh_images") != "$(basename "$images")" ]]; then
	log "the two builds have different cache keys ($(basename "$images"), $(basename "$fresh_images")): their inputs differ"
	exit 1
fi

# sums DIR: "name sha256" of each tar in DIR.
sums() {
	local f
	for f in "$1"/*.tar; do
		if [[ -e $f ]]; then echo "$(basename "$f") $(sha256sum <"$f" | cut -c1-64)"; fi
	done
}
# contents TAR: one line per entry, its listing and, for a file, the
# sha256 of its content.
contents() {
	tar --full-time -tvf "$1" | sed 's/^/meta /'
	# shellcheck disable=SC2016 # expanded by tar's shell, per file
	tar -xf "$1" --to-command='echo "data $(sha256sum | cut -c1-64) $TAR_FILENAME"'
}

different=0
table() {
	local kind=$1 cached_dir=$2 fresh_dir=$3 name a b
	declare -A c f
	while read -r name a; do c[$name]=$a; done < <(sums "$cached_dir")
	while read -r name b; do f[$name]=$b; done < <(sums "$fresh_dir")
	for name in $(printf '%s\n' "${!c[@]}" "${!f[@]}" | sort -u); do
		a=${c[$name]:-missing} b=${f[$name]:-missing}
		if [[ $a == "$b" ]]; then
			printf '%-30s %-64s %-64s %s\n' "$kind/$name" "$a" "$b" same
			continue
		fi
		printf '%-30s %-64s %-64s %s\n' "$kind/$name" "$a" "$b" DIFFERENT
		different=1
		if [[ $kind == roots && $a != missing && $b != missing ]]; then
			echo "  the first paths that differ (< cached, > fresh):"
			diff <(contents "$cached_dir/$name" | sort) <(contents "$fresh_dir/$name" | sort) |
				grep '^[<>]' | head -n 30 | sed 's/^/    /' || true
		elif [[ $kind == images && $a != missing && $b != missing ]]; then
			echo "  the entries that differ (< cached, > fresh):"
			diff <(tar -tvf "$cached_dir/$name") <(tar -tvf "$fresh_dir/$name") | grep '^[<>]' | head -n 10 | sed 's/^/    /' || true
		fi
	done
}

printf '%-30s %-64s %-64s %s\n' file "cached sha256" "fresh sha256" result
table roots "$roots" "$fresh_roots"
table images "$images" "$fresh_images"
log "$(basename "$images"), built twice, in $((SECONDS - start)) s in all"
if ((different)); then
	log "NOT reproducible: the same inputs gave different bytes"
	exit 1
fi
log "reproducible: every root and archive is the same, byte for byte"
