#!/bin/bash
# build-rootfs.sh builds, once, the Debian root filesystem that test hosts
# boot from, and prints its directory on stdout (progress goes to stderr).
#
# The result is cached outside the repo in $ECOM_TESTHOST_CACHE (default
# /var/cache/ecom-agent-testhost), in a directory named after a hash of this
# script: changing the package list, the masked units or anything else here
# builds a new cache on the next run. The build happens in a temporary
# directory renamed into place at the end, so a killed build never leaves a
# half cache behind, and under a lock, so concurrent callers build only once.
#
# Used by the Go package integration/testhost (which embeds this file) and by
# `make rootfs`. Needs root.
set -euo pipefail

SUITE=bookworm
MIRROR=http://deb.debian.org/debian
PACKAGES=(
	# What systemd as PID 1 needs.
	systemd systemd-sysv dbus
	# Networking and everyday tools later tests use.
	iproute2 iputils-ping iptables kmod ca-certificates curl procps less util-linux
	# What a Kubernetes node needs beside containerd (which Debian 12 has
	# too old, see tools/containerd): the OCI runtime, the CNI plugins
	# (bridge, host-local, portmap, loopback), conntrack for kube-proxy.
	runc containernetworking-plugins conntrack
	# The agent package's own Depends beside: the network-policy engine's
	# ipset (iptables is above).
	ipset
)
# Units that fail, or touch the machine's hardware, in a container whose
# /dev and /sys are not a real machine's.
MASKED_UNITS=(
	# Gettys: no terminals here; console-getty would otherwise be added by the
	# getty generator because container= is set.
	console-getty.service container-getty@.service getty@.service
	serial-getty@.service getty-static.service
	# udev: devices belong to the machine, not to a test host.
	systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
	systemd-udev-trigger.service systemd-udev-settle.service
	# Kernel file systems the machine already has or a container cannot mount.
	sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount
	sys-fs-fuse-connections.mount dev-hugepages.mount
	# Machine-wide state no test host should change: kernel modules, the
	# machine's pstore, remounting a root that is an overlay.
	systemd-modules-load.service systemd-remount-fs.service systemd-pstore.service
	# Periodic jobs that would hold the dpkg lock while a test installs a .deb,
	# try to reach the network, or scan file systems that are not the host's.
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service
	fstrim.timer
)

CACHE=${ECOM_TESTHOST_CACHE:-/var/cache/ecom-agent-testhost}
KEY=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
DIR=$CACHE/$KEY

log() { echo "build-rootfs: $*" >&2; }

if [[ -f $DIR/complete ]]; then
	echo "$DIR/rootfs"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	log "must run as root"
	exit 1
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
log "building in $CACHE (first waiting for any other build to finish)"
flock -w 1800 9
if [[ -f $DIR/complete ]]; then # another process built it while we waited
	echo "$DIR/rootfs"
	exit 0
fi

# remove_tree deletes a directory of a killed build. It first unmounts
# anything mounted below it (mmdebstrap mounts /proc, /sys and /dev in its
# target), so that rm can never reach into the machine's own file systems.
remove_tree() {
	local d=$1 m
	[[ -e $d ]] || return 0
	d=$(realpath "$d")
	while read -r m; do
		umount -l "$m" || true
	done < <(awk -v d="$d/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
	rm -rf --one-file-system "$d"
}

# Leftovers of a killed build: safe to delete because we hold the lock.
for old in "$CACHE"/.build-*; do
	[[ -e $old ]] || continue
	log "removing leftover $old"
	remove_tree "$old"
done

if ! command -v mmdebstrap >/dev/null; then
	log "installing mmdebstrap"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mmdebstrap >&2
	fi
fi

TMP=$(mktemp -d "$CACHE/.build-XXXXXX")
trap 'remove_tree "$TMP"' EXIT
ROOT=$TMP/rootfs

log "mmdebstrap $SUITE into $ROOT (a few minutes)"
start=$(date +%s)
include=$(
	IFS=,
	echo "${PACKAGES[*]}"
)
mmdebstrap --mode=root --variant=minbase --include="$include" \
	--aptopt='Acquire::Retries "3"' \
	"$SUITE" "$ROOT" \
	"deb $MIRROR $SUITE main" \
	"deb $MIRROR $SUITE-updates main" \
	"deb $MIRROR-security $SUITE-security main" </dev/null >&2

for unit in "${MASKED_UNITS[@]}"; do
	ln -sfn /dev/null "$ROOT/etc/systemd/system/$unit"
done
# Test hosts have no DNS: their names are in /etc/hosts, written per host.
echo "# ecom-agent test host: no DNS, names are in /etc/hosts" >"$ROOT/etc/resolv.conf"
# Each host gets its own machine ID when it is created.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin
{
	echo "key=$KEY"
	echo "suite=$SUITE"
	echo "packages=${PACKAGES[*]}"
	echo "masked=${MASKED_UNITS[*]}"
	echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$ROOT/etc/ecom-testhost-release"
cp "$ROOT/etc/ecom-testhost-release" "$TMP/complete"

mv -T "$TMP" "$DIR"
trap - EXIT

# Caches built by earlier versions of this script go, unless a test host
# still boots from one (its overlay's lower layer).
for old in "$CACHE"/*/; do
	old=${old%/}
	[[ $old != "$DIR" && -f $old/complete ]] || continue
	grep -qF "lowerdir=$old/rootfs" /proc/self/mountinfo && continue
	log "removing old cache $old"
	remove_tree "$old"
done

log "built $DIR/rootfs in $(($(date +%s) - start))s"
echo "$DIR/rootfs"
