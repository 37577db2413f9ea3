#!/usr/bin/env bash
# Builds the Debian 12 roots of the conformance images (agnhost, busybox,
# nginx) from Debian's packages with mmdebstrap, about a minute each, and
# prints their directory: $ECOM_E2E_CACHE/roots-<hash of this script>,
# holding agnhost.tar, busybox.tar and nginx.tar. Built in a temporary
# directory renamed into place, under a lock; older builds are removed.
# Needs root and the Debian mirror. tools/e2e/images.sh calls it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${ECOM_E2E_CACHE:-/var/cache/ecom-agent-e2e}
SUITE=bookworm
MIRROR=${ECOM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "e2e-roots: $*" >&2; }
mkdir -p "$cache"
exec 9>"$cache/.roots.lock"
flock 9

rootkey=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
roots=$cache/roots-$rootkey
if [[ ! -f $roots/complete ]]; then
	if ! command -v mmdebstrap >/dev/null; then
		log "installing mmdebstrap"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2 || {
			apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2; }
	fi
	tmp=$(mktemp -d "$cache/.roots-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	# mmdebstrap dates every file with it (reproducible roots, given the
	# same packages): the last commit of this script, else the epoch.
	if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
		SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct -- tools/e2e/roots.sh 2>/dev/null || true)
	fi
	export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
	# No documentation, manual pages or translations in an image.
	slim=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')
	log "agnhost root: Debian $SUITE with the tools of upstream's image"
	mmdebstrap --mode=root --variant=essential "${slim[@]}" \
		--include=bash,curl,netcat-openbsd,bind9-dnsutils,iproute2,iperf,socat,util-linux,iputils-ping,ca-certificates \
		--customize-hook='echo "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh" >> "$1/etc/passwd"' \
		--customize-hook='printf "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n" >> "$1/etc/group"' \
		--customize-hook='rm -rf "$1"/var/cache/* "$1"/var/log/*' \
		--format=tar "$SUITE" "$tmp/agnhost.tar" "$MIRROR" >&2
	log "nginx root: Debian $SUITE's nginx"
	mmdebstrap --mode=root --variant=essential "${slim[@]}" --include=nginx-light \
		--customize-hook='ln -sf /dev/stdout "$1/var/log/nginx/access.log"; ln -sf /dev/stderr "$1/var/log/nginx/error.log"' \
		--customize-hook='rm -rf "$1"/var/cache/apt "$1"/var/log/apt "$1"/var/log/dpkg.log' \
		--format=tar "$SUITE" "$tmp/nginx.tar" "$MIRROR" >&2
	log "busybox root: Debian $SUITE's busybox-static, its applets in /bin"
	# mmdebstrap runs no hooks for the extract variant: the links are made
	# here, and the tar written as mmdebstrap writes one (sorted, owned by
	# root, dated SOURCE_DATE_EPOCH).
	mmdebstrap --mode=root --variant=extract "${slim[@]}" --include=busybox-static \
		--format=directory "$SUITE" "$tmp/busybox" "$MIRROR" >&2
	for a in $("$tmp/busybox/bin/busybox" --list); do
		[[ -e $tmp/busybox/bin/$a ]] || ln -s busybox "$tmp/busybox/bin/$a"
	done
	mkdir -p "$tmp/busybox/tmp" "$tmp/busybox/etc"
	chmod 1777 "$tmp/busybox/tmp"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tmp/busybox/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/busybox/etc/group"
	rm -rf "$tmp/busybox/dev" "$tmp/busybox/var/lib/apt" "$tmp/busybox/var/cache" "$tmp/busybox/etc/apt"
	tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --owner=0 --group=0 --numeric-owner \
		--format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$tmp/busybox" -cf "$tmp/busybox.tar" .
	"$tmp/busybox/bin/sh" -c 'test -L "$0/bin/sleep"' "$tmp/busybox" || { log "busybox root: no applet links"; exit 1; }
	rm -rf "$tmp/busybox"
	touch "$tmp/complete"
	rm -rf "$roots"
	mv "$tmp" "$roots"
	trap - EXIT
fi

for old in "$cache"/roots-*; do [[ $old == "$roots" ]] || rm -rf "$old"; done
echo "$roots"
