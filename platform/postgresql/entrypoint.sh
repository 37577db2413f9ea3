#!/bin/bash
# The entrypoint of ecom-agent's PostgreSQL image (Debian's postgresql-15):
# the part of the official image's docker-entrypoint.sh the platform's
# manifests rely on, so the same StatefulSet runs either image.
#
# On the first start (no $PGDATA/PG_VERSION) it runs initdb with
# $POSTGRES_USER (default postgres) as the superuser and
# $POSTGRES_PASSWORD as its password, starts a server on the Unix socket
# only, creates $POSTGRES_DB, runs /docker-entrypoint-initdb.d/* (*.sh
# executed when executable, else sourced; *.sql and *.sql.gz through
# psql) and stops it. Then it executes its arguments: `postgres ARGS`,
# or just ARGS when the first is another program. Options alone (the
# manifests pass `-c config_file=...`) are options of postgres.
#
# A data directory that initdb left half-written (PG_VERSION missing, other
# files present) is refused with what to do, never overwritten.
set -Eeuo pipefail

log() { echo "postgresql-entrypoint: $*" >&2; }

if [[ $# -eq 0 || ${1:0:1} == - ]]; then
	set -- postgres "$@"
fi
if [[ $1 != postgres ]]; then
	exec "$@"
fi
: "${PGDATA:?PGDATA is not set: the image sets /var/lib/postgresql/data}"
if [[ $(id -u) == 0 ]]; then
	log "refusing to run as root: run the container as the postgres user (uid 999)"
	exit 1
fi

init() {
	local user=${POSTGRES_USER:-postgres}
	local db=${POSTGRES_DB:-$user}
	if [[ -z ${POSTGRES_PASSWORD:-} ]]; then
		log "the data directory $PGDATA is empty and POSTGRES_PASSWORD is not set: set it (the superuser's password) to initialise the database"
		exit 1
	fi
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA"
	if [[ -n $(ls -A "$PGDATA") ]]; then
		log "$PGDATA holds files but no PG_VERSION (an interrupted initdb?): move them aside or empty the volume, then restart the pod; nothing was changed"
		exit 1
	fi
	local pwfile
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	log "initialising $PGDATA (superuser $user, database $db)"
	# Local trust only while the temporary server below runs on a socket
	# in a directory of this container; replaced before the real start.
	initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
		--encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >&2
	rm -f "$pwfile"
	local sock
	sock=$(mktemp -d)
	pg_ctl -D "$PGDATA" -w -t 120 -o "-c listen_addresses='' -c unix_socket_directories=$sock" start >&2
	export PGHOST=$sock PGUSER=$user
	if [[ $db != postgres ]]; then
		psql -v ON_ERROR_STOP=1 --dbname postgres --set db="$db" <<< 'CREATE DATABASE :"db";' >&2
	fi
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		[[ -e $f ]] || continue
		case $f in
		*.sh)
			if [[ -x $f ]]; then
				log "running $f"
				"$f"
			else
				log "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql) log "running $f"; psql -v ON_ERROR_STOP=1 --dbname "$db" -f "$f" >&2 ;;
		*.sql.gz) log "running $f"; gunzip -c "$f" | psql -v ON_ERROR_STOP=1 --dbname "$db" >&2 ;;
		*) log "ignoring $f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w -t 120 stop >&2
	unset PGHOST PGUSER
	rmdir "$sock" 2>/dev/null || true
	# The data directory's own pg_hba.conf, used when no hba_file is
	# configured: the superuser by peer on the socket, passwords elsewhere.
	printf '%s\n' 'local all postgres peer' 'local all all scram-sha-256' \
		'host all all 0.0.0.0/0 scram-sha-256' 'host all all ::/0 scram-sha-256' > "$PGDATA/pg_hba.conf"
	log "initialised"
}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
	init
fi
exec "$@"
