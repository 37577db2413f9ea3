#!/usr/bin/env bash
# Runs the reference apps' tests (platform/test.sh) in a Debian 12 root
# with everything they need (the apps' packages, python3-httpx for the
# test client, PostgreSQL 15, redis-server, nginx), made once with
# mmdebstrap and cached in $ECOM_PLATFORM_CACHE/apptest-<hash of this
# script>/root; each run unpacks nothing: platform/test.sh writes only
# in its own tmpfs mounts and leaves the root as it was. Needs root and,
# the first time, the Debian mirror (about a minute).
#
# usage: tools/platform/apptest.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_PLATFORM_CACHE:-/var/cache/ecom-agent-platform}
MIRROR=${ECOM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "platform-apptest: $*" >&2; }
mkdir -p "$cache"
key=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
dir=$cache/apptest-$key
(
	flock 9
	if [[ ! -f $dir/complete ]]; then
		command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2
		log "building the test root (Debian bookworm)"
		rm -rf "$dir"
		tmp=$(mktemp -d "$cache/.apptest-XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		mmdebstrap --mode=root --variant=minbase --quiet --aptopt='APT::Install-Recommends "false"' \
			--include=python3-fastapi,python3-uvicorn,python3-psycopg2,python3-prometheus-client,python3-redis,python3-httpx,postgresql-15,redis-server,nginx-light,gettext-base \
			--customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
			bookworm "$tmp/root" "$MIRROR" >&2
		touch "$tmp/complete"
		mv "$tmp" "$dir"
		trap - EXIT
		for old in "$cache"/apptest-*; do [[ $old == "$dir" ]] || rm -rf "$old"; done
	fi
) 9>"$cache/.apptest.lock"
exec "$repo/platform/test.sh" "$dir/root"
