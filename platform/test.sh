#!/usr/bin/env bash
# Runs the tests of the reference apps (platform/backend, platform/frontend)
# inside an unpacked Debian 12 root, against a real PostgreSQL 15 and a real
# redis-server started in that root on loopback ports.
#
#   usage: platform/test.sh ROOT        (as root; exit code = the tests' result)
#
# ROOT needs: python3 python3-fastapi python3-uvicorn python3-psycopg2
# python3-prometheus-client python3-redis python3-httpx postgresql-15
# redis-server (redis-tools) nginx-light gettext-base.
#
# What it does, all undone by the EXIT trap: mounts proc on ROOT/proc, a tmpfs
# on ROOT/dev (with null, zero, full, random, urandom, tty bound from the host)
# and a tmpfs on ROOT/tmp; copies the apps and their tests into ROOT/tmp;
# starts PostgreSQL (initdb, as the root's postgres user) and redis-server
# (as nobody); runs both unittest suites under chroot with a time limit; stops
# the servers and every process left in ROOT; unmounts in reverse order.
# Every wait is bounded. ROOT itself is left as it was.
set -euo pipefail

SUITE_TIMEOUT=${ECOM_TEST_SUITE_TIMEOUT:-900} # seconds per unittest suite
here=$(cd "$(dirname "$0")" && pwd -P)

log() { echo "platform-test: $*" >&2; }
die() {
	log "$*"
	exit 2
}

[[ $# -eq 1 ]] || die "usage: $0 ROOT"
[[ $(id -u) -eq 0 ]] || die "must run as root (chroot, mount)"
[[ -d $1 ]] || die "$1 is not a directory"
ROOT=$(cd "$1" && pwd -P)
[[ $ROOT != / ]] || die "refusing to use / as ROOT"
[[ $ROOT != *[][*?\\]* ]] || die "ROOT must not contain * ? [ ] or \\"

missing=()
for f in usr/bin/python3 usr/lib/postgresql/15/bin/initdb usr/lib/postgresql/15/bin/pg_ctl \
	usr/lib/postgresql/15/bin/postgres usr/bin/redis-server usr/bin/redis-cli usr/sbin/nginx \
	usr/bin/envsubst bin/sh usr/bin/env; do
	[[ -x $ROOT/$f ]] || missing+=("/$f")
done
((${#missing[@]} == 0)) || die "ROOT lacks ${missing[*]} (Debian packages: python3 postgresql-15 redis-server nginx-light gettext-base ...)"
pg_uid=$(awk -F: '$1 == "postgres" { print $3 ":" $4 }' "$ROOT/etc/passwd")
[[ -n $pg_uid ]] || die "ROOT has no postgres user (is postgresql-15 installed?)"

for cmd in mount umount mountpoint flock chroot timeout; do
	command -v "$cmd" >/dev/null || die "host lacks $cmd"
done

# One run per ROOT at a time.
lockfile=/run/lock/ecom-platform-test-$(printf '%s' "$ROOT" | sha256sum | cut -c1-16).lock
mkdir -p /run/lock
exec 8>"$lockfile"
flock -n 8 || die "another platform/test.sh is using $ROOT"

procs_in_root() { # pids of the processes whose root directory is ROOT
	find /proc -mindepth 2 -maxdepth 2 -name root -lname "$ROOT" 2>/dev/null | cut -d/ -f3
	return 0
}
before=$(procs_in_root | tr '\n' ' ')
[[ -z $before ]] || die "processes already run inside $ROOT (pids $before): stop them first"

MOUNTS=()
PG_STARTED=0
SUITE_PID=
W=/tmp/ecom-platform-test # the work dir, as seen inside ROOT
started=$(date +%s)

in_root() { # in_root USERSPEC CMD... : run CMD inside ROOT with a clean environment
	local spec=$1
	shift
	chroot --userspec="$spec" "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=$W LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 "$@"
}

cleanup() {
	local rc=$? pid i m
	set +e
	[[ -n $SUITE_PID ]] && kill "$SUITE_PID" 2>/dev/null
	log "cleaning up"
	if ((PG_STARTED)); then
		timeout 30 chroot --userspec="$pg_uid" "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin \
			/usr/lib/postgresql/15/bin/pg_ctl -D $W/pg/data -m immediate -t 20 stop >/dev/null 2>&1
	fi
	if [[ -f $ROOT$W/redis/redis.pid ]]; then
		pid=$(cat "$ROOT$W/redis/redis.pid")
		[[ $(readlink "/proc/$pid/root" 2>/dev/null) == "$ROOT" ]] && kill "$pid"  # our redis-server
	fi
	log "servers stopped after $(($(date +%s) - started)) s"
	# Whatever is still running inside ROOT was started by this run.
	for i in 1 2 3 4 5 6 7 8 9 10; do
		pids=$(procs_in_root)
		[[ -z $pids ]] && break
		if ((i < 6)); then kill $pids 2>/dev/null; else kill -KILL $pids 2>/dev/null; fi
		sleep 0.5
	done
	[[ -z $(procs_in_root) ]] || log "warning: processes still running in $ROOT: $(procs_in_root | tr '\n' ' ')"
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${MOUNTS[i]}
		umount "$m" 2>/dev/null || { sleep 1; umount "$m" 2>/dev/null; } || umount -l "$m" ||
			log "warning: could not unmount $m"
	done
	log "cleaned up after $(($(date +%s) - started)) s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mnt() { # mnt TARGET MOUNT-ARGS...
	local target=$1
	shift
	mount "$@" "$target"
	MOUNTS+=("$target")
}

mnt "$ROOT/proc" -t proc proc
mnt "$ROOT/dev" -t tmpfs -o mode=0755,nosuid,size=16m tmpfs
for node in null zero full random urandom tty; do
	: >"$ROOT/dev/$node"
	mnt "$ROOT/dev/$node" --bind "/dev/$node"
done
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
mkdir -m 1777 "$ROOT/dev/shm"
mnt "$ROOT/tmp" -t tmpfs -o mode=1777,nosuid,nodev,size=4g tmpfs

# The apps and tests, readable by the unprivileged users the tests switch to.
mkdir -p "$ROOT$W/src" "$ROOT$W/pg" "$ROOT$W/redis"
chmod 755 "$ROOT$W" "$ROOT$W/src"
cp -R "$here/backend" "$here/frontend" "$ROOT$W/src/"
chmod -R a+rX,go-w "$ROOT$W/src"

free_port() { in_root 0:0 python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
redis_port=$(free_port)
while [[ $redis_port == "$pg_port" ]]; do redis_port=$(free_port); done
pg_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
redis_password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

# PostgreSQL 15
chown "$pg_uid" "$ROOT$W/pg"
chmod 700 "$ROOT$W/pg"
printf '%s\n' "$pg_password" >"$ROOT$W/pg/pwfile"
chown "$pg_uid" "$ROOT$W/pg/pwfile"
log "initdb"
timeout 120 chroot --userspec="$pg_uid" "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=$W/pg LANG=C \
	/usr/lib/postgresql/15/bin/initdb -D $W/pg/data -U postgres --pwfile=$W/pg/pwfile \
	--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$ROOT$W/pg/initdb.log" 2>&1 ||
	{ cat "$ROOT$W/pg/initdb.log" >&2; die "initdb failed"; }
log "starting PostgreSQL on 127.0.0.1:$pg_port"
PG_STARTED=1
timeout 90 chroot --userspec="$pg_uid" "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=$W/pg LANG=C \
	/usr/lib/postgresql/15/bin/pg_ctl -D $W/pg/data -l $W/pg/postgresql.log -w -t 60 \
	-o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$W/pg -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c dynamic_shared_memory_type=mmap -c shared_buffers=64MB" \
	start >/dev/null || { cat "$ROOT$W/pg/postgresql.log" >&2; die "PostgreSQL did not start"; }

# redis-server
chown 65534:65534 "$ROOT$W/redis"
log "starting redis-server on 127.0.0.1:$redis_port"
in_root 65534:65534 redis-server --bind 127.0.0.1 --port "$redis_port" --requirepass "$redis_password" \
	--save '' --appendonly no --daemonize yes --dir $W/redis --pidfile $W/redis/redis.pid \
	--logfile $W/redis/redis.log || die "redis-server did not start"
for i in $(seq 1 50); do
	[[ $(in_root 65534:65534 redis-cli -h 127.0.0.1 -p "$redis_port" -a "$redis_password" --no-auth-warning ping 2>/dev/null) == PONG ]] && break
	((i < 50)) || { cat "$ROOT$W/redis/redis.log" >&2; die "redis-server did not answer within 10 s"; }
	sleep 0.2
done

TEST_DATABASE_URL=postgresql://postgres:$pg_password@127.0.0.1:$pg_port/postgres
TEST_REDIS_URL=redis://:$redis_password@127.0.0.1:$redis_port/0

total_passed=0 total_failed=0 total_skipped=0 overall=0
run_suite() { # run_suite NAME DIR
	local name=$1 dir=$2 rc=0 out ran failures errors skipped
	out=$ROOT$W/$name-tests.log
	log "running the $name tests"
	# In the background + wait, so that INT/TERM reach the traps at once.
	timeout -k 15 "$SUITE_TIMEOUT" chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/tmp LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
		TEST_DATABASE_URL="$TEST_DATABASE_URL" TEST_REDIS_URL="$TEST_REDIS_URL" \
		python3 -m unittest discover -v -s "$dir" -t "$dir" 2>&1 | tee "$out" &
	SUITE_PID=$!
	wait "$SUITE_PID" || rc=$?
	SUITE_PID=
	((rc == 124 || rc == 137)) && log "$name tests timed out after $SUITE_TIMEOUT s"
	ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in .*/\1/p' "$out" | tail -1)
	failures=$(grep -E '^(FAILED|OK)' "$out" | tail -1 | grep -o 'failures=[0-9]*' | cut -d= -f2 || true)
	errors=$(grep -E '^(FAILED|OK)' "$out" | tail -1 | grep -o 'errors=[0-9]*' | cut -d= -f2 || true)
	skipped=$(grep -E '^(FAILED|OK)' "$out" | tail -1 | grep -o 'skipped=[0-9]*' | cut -d= -f2 || true)
	ran=${ran:-0} failures=${failures:-0} errors=${errors:-0} skipped=${skipped:-0}
	if ((rc != 0 && failures + errors == 0)); then errors=1; fi # crashed or timed out
	if ((ran == 0)); then
		log "$name: no test ran"
		rc=1 errors=$((errors == 0 ? 1 : errors))
	fi
	total_passed=$((total_passed + ran - failures - errors - skipped))
	total_failed=$((total_failed + failures + errors))
	total_skipped=$((total_skipped + skipped))
	log "$name: ran $ran, failed $failures, errors $errors, skipped $skipped (exit $rc)"
	((rc == 0)) || overall=1
}
run_suite backend $W/src/backend/tests
run_suite frontend $W/src/frontend/tests

log "finished in $(($(date +%s) - started)) s"
echo "platform: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit "$overall"
