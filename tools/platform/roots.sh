#!/usr/bin/env bash
# Builds the Debian roots of the platform's images (package
# images/platform) from Debian 12's packages with mmdebstrap, all at once
# (about two minutes cold), and prints their directory:
# $ECOM_PLATFORM_CACHE/roots-<hash of this script>, holding one
# uncompressed tar per image (postgresql.tar, redis.tar, backend.tar,
# frontend.tar, alertmanager.tar, postgres-exporter.tar),
# packages.txt, every package and version in each root, and
# source-date-epoch, the SOURCE_DATE_EPOCH they are dated (so
# tools/platform/repro.sh can build them again the same). Built in a
# temporary directory renamed into place, under a lock; older builds are
# removed. Needs root and the Debian mirror. tools/platform/images.sh
# calls it.
#
# Each root is the essential set plus the image's package, its user with
# the uid the seeded manifests run it as, Debian's copyright files (no
# other documentation), dated SOURCE_DATE_EPOCH: the same package
# versions give the same bytes (make platform-repro checks it). Nothing
# of the build host or of the moment is kept: /etc/hostname and
# /etc/resolv.conf (mmdebstrap copies the host's; the container runtime
# mounts its own over them) are fixed, and ssl-cert's snakeoil key and
# certificate (a new random key, the host's name and the time in each
# build; the PostgreSQL image's entrypoint turns no TLS on) are removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_PLATFORM_CACHE:-/var/cache/ecom-agent-platform}
SUITE=bookworm
MIRROR=${ECOM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "platform-roots: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.roots.lock"
flock 9

rootkey=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
roots=$cache/roots-$rootkey
if [[ -f $roots/complete ]]; then
	echo "$roots"
	exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
	log "installing mmdebstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2 || {
		apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2; }
fi
tmp=$(mktemp -d "$cache/.roots-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct -- tools/platform/roots.sh 2>/dev/null || true)
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
echo "$SOURCE_DATE_EPOCH" > "$tmp/source-date-epoch"

# user NAME UID HOME: a hook line adding a user and its group before the
# packages are installed, so a package's postinst (adduser --system)
# finds it and keeps its uid.
user() {
	printf 'echo "%s:x:%s:%s::%s:/usr/sbin/nologin" >> "$1/etc/passwd"; echo "%s:x:%s:" >> "$1/etc/group"; echo "%s:!:1::::::" >> "$1/etc/shadow"' \
		"$1" "$2" "$2" "$3" "$1" "$2" "$1"
}

# root NAME PACKAGES [mmdebstrap options...]: one root, in the background.
root() {
	local name=$1 pkgs=$2
	shift 2
	mmdebstrap --mode=root --variant=essential --quiet \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--include="$pkgs" "$@" \
		--customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/etc/ecom-agent-packages"' \
		--customize-hook='rm -rf "$1"/var/cache/apt "$1"/var/lib/apt/lists/* "$1"/var/log/apt "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log' \
		--customize-hook='echo localhost > "$1"/etc/hostname; : > "$1"/etc/resolv.conf; chmod 0644 "$1"/etc/hostname "$1"/etc/resolv.conf' \
		--format=tar "$SUITE" "$tmp/$name.tar" "$MIRROR" > "$tmp/$name.log" 2>&1
}

log "building 6 roots from Debian $SUITE (logs in $tmp/*.log while it runs)"
pids=()
# PostgreSQL 15 as uid 999 (the manifests' user), named postgres so that
# `psql -U postgres` through kubectl exec authenticates by peer.
# No cluster: the entrypoint initialises the pod's volume.
root postgresql postgresql-15 --essential-hook="$(user postgres 999 /var/lib/postgresql)" \
	--customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
	--customize-hook='find "$1"/etc/ssl/certs -lname ssl-cert-snakeoil.pem -delete; rm -f "$1"/etc/ssl/certs/ssl-cert-snakeoil.pem "$1"/etc/ssl/private/ssl-cert-snakeoil.key' &
pids+=($!)
root redis redis-server --essential-hook="$(user redis 999 /data)" &
pids+=($!)
root backend python3-fastapi,python3-uvicorn,python3-psycopg2,python3-prometheus-client,python3-redis \
	--essential-hook="$(user app 10001 /nonexistent)" &
pids+=($!)
root frontend nginx-light,gettext-base --essential-hook="$(user nginx 101 /nonexistent)" \
	--customize-hook='rm -f "$1"/etc/nginx/sites-enabled/default' &
pids+=($!)
root alertmanager prometheus-alertmanager &
pids+=($!)
root postgres-exporter prometheus-postgres-exporter &
pids+=($!)
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if ((failed)); then
	for f in "$tmp"/*.log; do log "---- $(basename "$f")"; tail -n 20 "$f" >&2; done
	log "a root did not build"
	exit 1
fi
for t in "$tmp"/*.tar; do
	n=$(basename "$t" .tar)
	tar -xOf "$t" ./etc/ecom-agent-packages | sed "s/^/$n /" >> "$tmp/packages.txt"
done
rm -f "$tmp"/*.log
touch "$tmp/complete"
rm -rf "$roots"
mv "$tmp" "$roots"
trap - EXIT
for old in "$cache"/roots-*; do [[ $old == "$roots" ]] || rm -rf "$old"; done
echo "$roots"
