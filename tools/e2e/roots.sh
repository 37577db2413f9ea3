#!/usr/bin/env bash
# Builds the Debian roots of the conformance images (agnhost, busybox,
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
	log "busybox root: Debian 13's busybox-static (1.37, upstream's version), its applets in /bin; sh is bash-static"
	# Only the two static programs: busybox and its applets, and bash as
	# sh. Busybox's ash drops environment variables whose names are no
	# shell identifiers (data-1, 1-data-1) from the commands it runs, and
	# the conformance specs of such names read them with `sh -c env`;
	# bash passes them on. mmdebstrap runs no hooks for the extract
	# variant, so the root is assembled here and the tar written as
	# mmdebstrap writes one (sorted, owned by root, dated
	# SOURCE_DATE_EPOCH).
	mmdebstrap --mode=root --variant=extract "${slim[@]}" --include=busybox-static,bash-static \
		--format=directory trixie "$tmp/busybox-debs" "$MIRROR" >&2
	bb=$tmp/busybox
	mkdir -p "$bb/usr/bin" "$bb/usr/sbin" "$bb/tmp" "$bb/etc" "$bb/root"
	ln -s usr/bin "$bb/bin"
	ln -s usr/sbin "$bb/sbin"
	cp "$tmp/busybox-debs/usr/bin/busybox" "$tmp/busybox-debs/usr/bin/bash-static" "$bb/usr/bin/"
	rm -rf "$tmp/busybox-debs"
	ln -s bash-static "$bb/usr/bin/sh"
	ln -s bash-static "$bb/usr/bin/bash"
	for a in $("$bb/usr/bin/busybox" --list); do
		[[ -e $bb/usr/bin/$a || -L $bb/usr/bin/$a ]] || ln -s busybox "$bb/usr/bin/$a"
	done
	chmod 1777 "$bb/tmp"
	chmod 0700 "$bb/root"
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$bb/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' > "$bb/etc/group"
	tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --owner=0 --group=0 --numeric-owner \
		--format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$bb" -cf "$tmp/busybox.tar" .
	if ! env -i 'data-1=value-1' "$bb/usr/bin/sh" -c env | grep -qx 'data-1=value-1' || [[ ! -L $bb/usr/bin/sleep ]]; then
		log "busybox root: sh drops data-1 or the applets are not linked"
		exit 1
	fi
	rm -rf "$bb"
	touch "$tmp/complete"
	rm -rf "$roots"
	mv "$tmp" "$roots"
	trap - EXIT
fi

for old in "$cache"/roots-*; do [[ $old == "$roots" ]] || rm -rf "$old"; done
echo "$roots"
