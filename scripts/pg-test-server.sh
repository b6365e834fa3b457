#!/usr/bin/env bash
# Throw-away PostgreSQL cluster for the tests.
#
#   scripts/pg-test-server.sh start DIR   initdb (if needed) + start a cluster in DIR,
#                                         create role "opus" and database "opus_test",
#                                         print the SQLAlchemy URL on stdout
#   scripts/pg-test-server.sh url DIR     print the SQLAlchemy URL
#   scripts/pg-test-server.sh stop DIR    stop the cluster (pg_ctl stop -m fast), remove DIR
#
# The server listens only on a unix socket in DIR (no TCP), uses trust auth and
# runs with fsync etc. off: never use it for real data.  As root, the server
# runs as the OS user "postgres" (DIR is chowned to it).  Binaries come from the
# newest /usr/lib/postgresql/*/bin (override with PG_BINDIR).  The socket port
# number defaults to 54329 (OPUS_TEST_PG_PORT); it only names the socket file.
set -euo pipefail

usage() { echo "usage: $0 start|stop|url DIR" >&2; exit 2; }
die() { echo "pg-test-server: ERROR: $*" >&2; exit 1; }
log() { echo "pg-test-server: $*" >&2; }

[ $# -eq 2 ] || usage
CMD="$1"
[ -n "$2" ] || usage
case "$2" in /*) DIR="$2" ;; *) DIR="$PWD/$2" ;; esac
DIR="${DIR%/}"
[ -n "$DIR" ] && [ "$DIR" != "/" ] || die "refusing to use / as DIR"

DATA="$DIR/data"
MARKER="$DIR/.opus-pg-test"
PORTFILE="$DIR/port"
LOGFILE="$DIR/server.log"

find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        [ -x "$PG_BINDIR/pg_ctl" ] || die "PG_BINDIR=$PG_BINDIR has no pg_ctl"
        echo "$PG_BINDIR"; return
    fi
    local d best="" bestv=-1 v
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] || continue
        v="$(basename "$(dirname "$d")")"
        v="${v%%.*}"
        case "$v" in ''|*[!0-9]*) v=0 ;; esac
        if [ "$v" -gt "$bestv" ]; then bestv="$v"; best="$d"; fi
    done
    [ -n "$best" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (run: scripts/setup.sh --test, or apt-get install postgresql)"
    echo "$best"
}

# Run a command as the cluster owner: "postgres" when we are root, else ourselves.
# cd / so that an unreadable cwd (e.g. under /root) does not bother postgres.
IS_ROOT=0; [ "$(id -u)" -eq 0 ] && IS_ROOT=1
as_owner() {
    if [ "$IS_ROOT" -eq 1 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

print_url() {
    [ -f "$PORTFILE" ] || die "no test cluster in $DIR (run: $0 start $DIR)"
    local port
    port="$(cat "$PORTFILE")"
    echo "postgresql+psycopg2://opus@/opus_test?host=${DIR}&port=${port}"
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] && as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

cmd_start() {
    local port="${OPUS_TEST_PG_PORT:-54329}" created=0
    # unix socket paths are limited to ~107 bytes
    local sock="$DIR/.s.PGSQL.$port"
    [ "${#sock}" -le 100 ] || die "DIR path too long for a unix socket ($sock); use a short dir such as /tmp/opus-pg"
    if [ -e "$DIR" ]; then
        if [ ! -f "$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
            die "$DIR exists, is not empty and is not a test cluster made by this script; refusing to use it"
        fi
    else
        mkdir -p "$DIR"
        created=1
    fi
    touch "$MARKER"
    if [ "$IS_ROOT" -eq 1 ]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user (apt-get install postgresql creates it)"
        chown -R postgres: "$DIR"
        chmod 755 "$DIR"
        if ! runuser -u postgres -- test -w "$DIR"; then
            [ "$created" -eq 0 ] || rm -rf "$DIR"
            die "user postgres cannot write $DIR (is a parent directory closed to it? use a dir under /tmp)"
        fi
    fi

    if is_running; then
        log "already running in $DIR"
        print_url
        return
    fi

    if [ ! -f "$DATA/PG_VERSION" ]; then
        rm -rf "$DATA"
        local out
        if ! out="$(as_owner "$BINDIR/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C --no-sync 2>&1)"; then
            echo "$out" >&2
            die "initdb failed"
        fi
        as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# ---- scripts/pg-test-server.sh: throw-away test cluster ----
listen_addresses = ''
port = $port
unix_socket_directories = '$DIR'
unix_socket_permissions = 0777
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_connections = 200
log_min_messages = warning
logging_collector = off
EOF
        echo "$port" | as_owner tee "$PORTFILE" >/dev/null
    fi
    port="$(cat "$PORTFILE")"

    if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 60 -s start >/dev/null 2>&1; then
        echo "---- $LOGFILE ----" >&2
        tail -n 30 "$LOGFILE" >&2 2>/dev/null || true
        die "pg_ctl start failed"
    fi

    local psql=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U postgres -d postgres)
    local out
    if ! out="$(as_owner "${psql[@]}" 2>&1 <<'EOF'
SELECT 'CREATE ROLE opus LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'opus')\gexec
SELECT 'CREATE DATABASE opus_test OWNER opus' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'opus_test')\gexec
EOF
    )"; then
        echo "$out" >&2
        die "could not create role opus / database opus_test"
    fi
    log "started PostgreSQL $("$BINDIR/postgres" -V | awk '{print $3}') in $DIR (socket $sock)"
    print_url
}

cmd_stop() {
    if [ ! -e "$DIR" ]; then
        return 0
    fi
    [ -f "$MARKER" ] || die "$DIR is not a test cluster made by this script; not touching it"
    if [ -f "$DATA/postmaster.pid" ]; then
        if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w -t 60 -s stop >/dev/null 2>&1; then
            if is_running; then
                die "pg_ctl stop failed (see $LOGFILE)"
            fi
        fi
    fi
    rm -rf "$DIR"
}

case "$CMD" in
    start) BINDIR="$(find_bindir)"; cmd_start ;;
    stop)  BINDIR="$(find_bindir)"; cmd_stop ;;
    url)   print_url ;;
    *)     usage ;;
esac
