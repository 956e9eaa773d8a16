#!/usr/bin/env bash
# Load figures for the reference server (README, "The reference server"), on loopback only.
#
#   scripts/load.sh            # about 4-6 minutes on two cores, most of it seeding 100,000 keys
#
# Phases, each bounded in time (wrk -d, timeout), all traffic to 127.0.0.1:
#   1. seed KEYS keys through POST /api_keys (wrk in 5 s rounds until the server answers 403
#      "API key limit reached": --max-keys is KEYS plus the bootstrap key);
#   2. p99 of small authenticated GETs (GET /api_keys/me) alone, then while 4 clients page
#      through every key (GET /api_keys?limit=200, following next_cursor);
#   3. a 200-socket slowloris (heads trickled one byte every 0.5 s, never finished) while the
#      same small GETs are measured: when each slow socket is closed, and the GETs' p99;
#   4. RSS over 1,000,000 requests of random methods and paths (10 s rounds until that many).
# Needs wrk (installed with apt-get when missing and run as root) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

HOST=127.0.0.1 # loopback only: never point this at another machine
PORT=${PORT:-18088}
KEYS=${KEYS:-100000}
PHASE_SECONDS=${PHASE_SECONDS:-30}
RSS_REQUESTS=${RSS_REQUESTS:-1000000}

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null
    else
        echo "wrk is needed: apt-get install wrk" >&2
        exit 1
    fi
fi

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== machine: $(nproc) cores; $(uptime)"
cargo build --release --quiet --example server
target_dir=${CARGO_TARGET_DIR:-target}
"$target_dir/release/examples/server" --addr "$HOST:$PORT" --max-keys $((KEYS + 1)) \
    --database "sqlite:$work/keygate.db" \
    --log-format json >"$work/stdout" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
    [ "$(wc -l <"$work/stdout")" -ge 3 ] && break
    sleep 0.1
done
KEY=$(sed -n 3p "$work/stdout")
[[ "$KEY" =~ ^idc_[A-Za-z0-9]{32}$ ]] || { echo "server printed no key" >&2; exit 1; }
export KEY
base="http://$HOST:$PORT"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
p50() { awk '$1 == "50%" {print $2}' "$1"; }

cat >"$work/seed.lua" <<'LUA'
-- POST /api_keys; counts what was created (201) and refused (403: the server's key limit).
-- Counters are globals: wrk's thread:get reads only those.
created, refused, other = 0, 0, 0
wrk.method = "POST"
wrk.body = '{"name": "load", "permissions": ["read"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 403 then refused = refused + 1
  else other = other + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local c, r, o = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); r = r + t:get("refused"); o = o + t:get("other")
  end
  io.write(string.format("created %d refused %d other %d\n", c, r, o))
end
LUA

echo "== 1. seeding $KEYS keys through POST /api_keys"
started=$SECONDS
created=0
refused=0
for _ in $(seq 1 300); do # at most 300 rounds of 5 s
    timeout 60 wrk -t2 -c4 -d5s -s "$work/seed.lua" "$base/api/v1/public/api_keys" >"$work/seed.txt"
    read -r _ c _ r _ o < <(grep '^created' "$work/seed.txt")
    created=$((created + c))
    refused=$r
    [ "$o" = 0 ] || { echo "unexpected answers while seeding:" >&2; cat "$work/seed.txt" >&2; exit 1; }
    [ "$r" = 0 ] || break
done
# The server refusing more means the account holds its cap: the bootstrap key and KEYS more.
# (wrk misses the answers still in flight when a round ends, so its own count runs a little low.)
[ "$refused" -gt 0 ] || { echo "the key cap was never reached ($created created)" >&2; exit 1; }
echo "seeded $KEYS keys in $((SECONDS - started)) s; server RSS $(rss) kB"

cat >"$work/pager.lua" <<'LUA'
-- Pages through every key, 200 at a time, following next_cursor; starts over at the end.
local first = "/api/v1/public/api_keys?limit=200"
local path = first
pages, passes = 0, 0 -- globals, for thread:get
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
function request() return wrk.format("GET", path) end
function response(status, headers, body)
  pages = pages + 1
  local cursor = body:match('"next_cursor":"([^"]+)"')
  if cursor then path = first .. "&cursor=" .. cursor else path = first; passes = passes + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local p, n = 0, 0
  for _, t in ipairs(threads) do p = p + t:get("pages"); n = n + t:get("passes") end
  io.write(string.format("pages: %d, full passes: %d\n", p, n))
end
LUA

probe() { # $1: seconds, $2: output file
    timeout $(($1 + 30)) wrk -t1 -c1 -d"$1s" --latency -H "Authorization: Bearer $KEY" \
        "$base/api/v1/public/api_keys/me" >"$2"
}

echo "== 2. small GETs (GET /api_keys/me, one connection, back to back), alone then beside 4 pagers"
probe "$PHASE_SECONDS" "$work/probe-alone.txt"
echo "alone: p50 $(p50 "$work/probe-alone.txt"), p99 $(p99 "$work/probe-alone.txt"); $(grep 'Requests/sec' "$work/probe-alone.txt")"
timeout $((PHASE_SECONDS + 60)) wrk -t4 -c4 -d"$((PHASE_SECONDS + 4))s" -s "$work/pager.lua" \
    "$base/api/v1/public/api_keys" >"$work/pagers.txt" &
pagers=$!
sleep 2
probe "$PHASE_SECONDS" "$work/probe-paging.txt"
wait "$pagers"
echo "beside pagers: p50 $(p50 "$work/probe-paging.txt"), p99 $(p99 "$work/probe-paging.txt"); $(grep 'Requests/sec' "$work/probe-paging.txt")"
echo "pagers: $(grep -E "^pages" "$work/pagers.txt"); page latency avg $(awk '$1 == "Latency" {print $2}' "$work/pagers.txt"), max $(awk '$1 == "Latency" {print $4}' "$work/pagers.txt")"

cat >"$work/slowloris.py" <<'PY'
# Opens N sockets, sends a request head one byte every 0.5 s without ever finishing it, and
# reports when the server closed each. Stops after LIMIT seconds whatever happens.
import socket, sys, time
host, port, n, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
assert host == "127.0.0.1"
head = b"GET /api/v1/public/api_keys/me HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
socks = []
for _ in range(n):
    s = socket.create_connection((host, port))
    s.setblocking(False)
    socks.append(s)
start = time.monotonic()
closed = [None] * n
sent = [0] * n
while time.monotonic() - start < limit and None in closed:
    now = time.monotonic() - start
    for i, s in enumerate(socks):
        if closed[i] is not None:
            continue
        try:
            if s.recv(4096) == b"":
                closed[i] = now
                continue
        except BlockingIOError:
            pass
        except OSError:
            closed[i] = now
            continue
        try:
            chunk = head[sent[i]:sent[i] + 1] or b"a"
            s.send(chunk)
            sent[i] += 1
        except OSError:
            closed[i] = now
    time.sleep(0.5)
done = [c for c in closed if c is not None]
print(f"slow sockets: {n}, closed by the server: {len(done)}, "
      f"first closed at {min(done, default=0):.1f} s, last at {max(done, default=0):.1f} s")
PY

echo "== 3. slowloris: 200 sockets trickling a head, beside the small GETs"
timeout 60 python3 "$work/slowloris.py" "$HOST" "$PORT" 200 25 >"$work/slowloris.txt" &
loris=$!
sleep 1
probe 12 "$work/probe-loris.txt"
wait "$loris"
cat "$work/slowloris.txt"
echo "small GETs meanwhile: p50 $(p50 "$work/probe-loris.txt"), p99 $(p99 "$work/probe-loris.txt"); $(grep 'Requests/sec' "$work/probe-loris.txt")"

cat >"$work/random.lua" <<'LUA'
-- Random methods (some made up, some unbounded) on random paths, real and not, with a real
-- key. No HEAD: wrk cannot parse its bodiless answers.
local methods = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW", "PROPFIND", "RANDOM"}
local key = "Bearer " .. os.getenv("KEY")
function init(args) math.randomseed(os.time() + math.floor(os.clock() * 1e6)) end
local function word()
  local t = {}
  for i = 1, math.random(1, 12) do t[i] = string.char(math.random(97, 122)) end
  return table.concat(t)
end
local calls = 0
function request()
  calls = calls + 1
  -- wrk checks the first request with a parser that knows only the standard methods.
  if calls == 1 then return wrk.format("GET", "/api/v1/public/projects", {Authorization = key}) end
  local method = methods[math.random(#methods)]
  if method == "RANDOM" then method = "X" .. string.upper(word()) end
  local r, path = math.random(7)
  if r == 1 then path = "/api/v1/public/projects/" .. math.random(1, 1e9)
  elseif r == 2 then path = "/api/v1/public/" .. word()
  elseif r == 3 then path = string.format("/api/v1/public/api_keys/%08x%08x%08x%08x",
      math.random(0, 2^31), math.random(0, 2^31), math.random(0, 2^31), math.random(0, 2^31))
  elseif r == 4 then path = "/" .. word() .. "/" .. word()
  elseif r == 5 then path = "/api/v1/public/recordings?limit=" .. math.random(-5, 500) .. "&" .. word() .. "=1"
  elseif r == 6 then path = "/api/v1/public/projects?cursor=" .. word()
  else path = "/api/v1/public/api_keys/" .. word() .. "/usage" end
  return wrk.format(method, path, {Authorization = key})
end
LUA

echo "== 4. RSS over $RSS_REQUESTS requests of random methods and paths"
rss_line="before: $(rss) kB"
total=0
round=0
while [ "$total" -lt "$RSS_REQUESTS" ] && [ "$round" -lt 100 ]; do # at most 100 rounds of 10 s
    round=$((round + 1))
    timeout 60 wrk -t2 -c8 -d10s -s "$work/random.lua" "$base/" >"$work/random.txt"
    total=$((total + $(awk '/requests in/ {print $1}' "$work/random.txt")))
    rss_line="$rss_line; $total: $(rss)"
done
echo "$rss_line"
grep 'Requests/sec' "$work/random.txt"
kill -0 "$server_pid" && echo "server still up; log lines: $(wc -l <"$work/server.log")"
echo "== machine at the end: $(uptime)"
