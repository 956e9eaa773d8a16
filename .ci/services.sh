#!/usr/bin/env bash
# Starts throwaway PostgreSQL and Redis servers on loopback, on free ports, for the tests that need
# them, and prints the environment that points the tests at them:
#
#   eval "$(bash .ci/services.sh start)"   # exports KEYGATE_TEST_POSTGRES, KEYGATE_TEST_REDIS,
#                                           # KEYGATE_SERVICES_DIR
#   bash .ci/services.sh stop "$KEYGATE_SERVICES_DIR"
#
# PostgreSQL refuses to run as root, so under root its data directory belongs to, and the server
# runs as, the `postgres` user. Redis comes from the distribution's redis-server package, installed
# here when missing (root and apt only). Nothing is written outside one temporary directory, and
# neither server persists anything there beyond the run.
set -euo pipefail

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_bin() {
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
    # Debian keeps PostgreSQL's server programs out of PATH.
    local dir
    dir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ]; then echo "PostgreSQL is not installed (initdb not found)" >&2; exit 1; fi
    echo "$dir"
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        # runuser keeps no tty and needs no password; the command runs in the postgres user's shell.
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local dir pg_port redis_port bin
    dir=$(mktemp -d /tmp/keygate-services.XXXXXX)
    chmod 755 "$dir"
    bin=$(pg_bin)
    pg_port=$(free_port)
    mkdir -p "$dir/pg"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir/pg"; fi
    as_postgres "$bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # Loopback only; the socket directory inside the throwaway directory; fsync off (throwaway).
    as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 start \
        -o "-h 127.0.0.1 -p $pg_port -k $dir/pg -c fsync=off -c max_connections=200" >/dev/null \
        || { cat "$dir/pg/server.log" >&2; exit 1; }
    if ! command -v redis-server >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) \
                >"$dir/apt-redis.log" 2>&1 || { cat "$dir/apt-redis.log" >&2; exit 1; }
        else
            echo "redis-server is missing (apt-get install redis-server)" >&2
            exit 1
        fi
    fi
    redis_port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 1 100); do
        if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then break; fi
        sleep 0.1
    done
    redis-cli -p "$redis_port" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }
    echo "export KEYGATE_SERVICES_DIR=$dir"
    echo "export KEYGATE_TEST_POSTGRES=postgres://postgres@127.0.0.1:$pg_port/postgres"
    echo "export KEYGATE_TEST_REDIS=redis://127.0.0.1:$redis_port"
}

stop() {
    local dir=$1 bin
    [ -d "$dir" ] || return 0
    bin=$(pg_bin)
    if [ -d "$dir/pg/data" ]; then
        as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:?usage: services.sh stop DIR}" ;;
    *) echo "usage: services.sh start | stop DIR" >&2; exit 2 ;;
esac
