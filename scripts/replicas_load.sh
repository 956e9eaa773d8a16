#!/usr/bin/env bash
# Authenticated requests per second with the rate limit checked in Redis (--redis) beside the
# replica's own in-process limiter, and the same across two replicas on one PostgreSQL database
# (README, "Running several replicas"). Loopback only; every phase bounded by wrk -d.
#
#   scripts/replicas_load.sh        # about 2 minutes after the release build
#
# Each phase: wrk, 8 connections, SECONDS seconds of GET /api_keys/me with a key limited to 10^9
# requests per hour (so every request runs the limiter, and none is refused). Uses the services
# KEYGATE_TEST_POSTGRES and KEYGATE_TEST_REDIS name, or starts its own (.ci/services.sh).
# Needs wrk (installed with apt-get when missing and run as root) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-15}
CONNECTIONS=${CONNECTIONS:-8}

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null
    else
        echo "wrk is needed: apt-get install wrk" >&2
        exit 1
    fi
fi

# Server pids, in a file: `start` runs in a subshell (process substitution).
pidfile=$(mktemp)
services_dir=
cleanup() {
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$pidfile"
    rm -f "$pidfile"
    if [ -n "$services_dir" ]; then bash .ci/services.sh stop "$services_dir"; fi
}
trap cleanup EXIT
if [ -z "${KEYGATE_TEST_POSTGRES:-}" ] || [ -z "${KEYGATE_TEST_REDIS:-}" ]; then
    eval "$(bash .ci/services.sh start)"
    services_dir=$KEYGATE_SERVICES_DIR
fi

cargo build --release --quiet -p keygate-server
bin=${CARGO_TARGET_DIR:-target}/release/keygate-server

# Starts a server with the given arguments; prints "URL TOKEN" (TOKEN empty on a later replica).
start() {
    local out
    out=$(mktemp)
    "$bin" --addr 127.0.0.1:0 --log-format json "$@" >"$out" 2>/dev/null &
    echo $! >>"$pidfile"
    for _ in $(seq 1 100); do
        if grep -q '^keys loaded\|^idc_' "$out" 2>/dev/null; then break; fi
        sleep 0.1
    done
    local url token
    url=$(head -n 1 "$out" | awk '{print $NF}')
    token=$(grep '^idc_' "$out" | head -n 1 || true)
    echo "$url $token"
}

# Creates a key limited to 10^9 requests per hour with ROOT at URL; prints its token.
limited_key() {
    python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
url, root = sys.argv[1], sys.argv[2]
body = json.dumps({"name": "load", "rate_limit": {"requests": 1000000000, "period_seconds": 3600}}).encode()
request = urllib.request.Request(url + "/api_keys", data=body, method="POST", headers={
    "Authorization": "Bearer " + root, "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["data"]["key"])
PY
}

fresh_database() {
    local name
    name="keygate_load_$$_$RANDOM"
    python3 - "$KEYGATE_TEST_POSTGRES" "$name" <<'PY'
import subprocess, sys
admin, name = sys.argv[1], sys.argv[2]
subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True)
print(admin.rsplit("/", 1)[0] + "/" + name)
PY
}

# wrk on URL/api_keys/me with TOKEN; prints "requests/s p50 p99".
load() {
    local url=$1 token=$2
    wrk -t 2 -c "$CONNECTIONS" -d "${SECONDS_PER_PHASE}s" --latency \
        -H "Authorization: Bearer $token" "$url/api_keys/me" |
        awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
             /Non-2xx/ {bad=$NF} END {printf "%s req/s, p50 %s, p99 %s, non-2xx %s\n", rps, p50, p99, bad+0}'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
read -r url root < <(start --in-memory)
token=$(limited_key "$url" "$root")
echo "one replica, in-process limiter:   $(load "$url" "$token")"

read -r url root < <(start --in-memory --redis "$KEYGATE_TEST_REDIS")
token=$(limited_key "$url" "$root")
echo "one replica, Redis limiter:        $(load "$url" "$token")"

database=$(fresh_database)
read -r url_a root < <(start --database "$database" --redis "$KEYGATE_TEST_REDIS")
read -r url_b _ < <(start --database "$database" --redis "$KEYGATE_TEST_REDIS")
token=$(limited_key "$url_a" "$root")
sleep 1 # the key reaches B
load "$url_a" "$token" >/tmp/keygate-load-a.txt &
load "$url_b" "$token" >/tmp/keygate-load-b.txt
wait
echo "two replicas (PostgreSQL, Redis), A: $(cat /tmp/keygate-load-a.txt)"
echo "two replicas (PostgreSQL, Redis), B: $(cat /tmp/keygate-load-b.txt)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
