#!/usr/bin/env bash
# Idle cost: the CPU time `switchboard serve` (release) uses while nothing happens, with many
# tokens in its store and many open connections. Revocation is found through a change
# counter in the store and expiry through one timer per event loop, so this should be ~0.
#
#   Benchmarks/idle.sh                 # 100000 tokens, 10000 connections, 30 s window
#   TOKENS=100000 CONNECTIONS=10000 WINDOW=30 HEARTBEAT=30 NO_BUILD=1 Benchmarks/idle.sh
#
# The connections are spread over CONNECTIONS/1000 tokens (max_connections_per_token is
# 1000), half of all tokens expire in a day (so every loop has an expiry timer armed).
# Prints the server's CPU time over the window (from /proc/PID/stat), its context switches,
# and a `perf stat` of the same window when perf is allowed. Loopback only; every step is
# bounded (wsload holds its connections for a fixed time; the server is killed on exit).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
BUILD=1; [ "${NO_BUILD:-0}" = 1 ] && BUILD=0
require_wsload "$ROOT" "$BUILD"
TOKENS=${TOKENS:-100000}
CONNECTIONS=${CONNECTIONS:-10000}
WINDOW=${WINDOW:-30}
# Seconds between pings to each client: 30 as deployed; 0 leaves only the broker's own work.
HEARTBEAT=${HEARTBEAT:-30}
PER_TOKEN=1000

cd "$ROOT"
if [ "${NO_BUILD:-0}" != 1 ]; then
    swift build -c release --product switchboard >&2
fi
BIN="$(swift build -c release --show-bin-path)/switchboard"
ulimit -n "$((CONNECTIONS + 1024))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

make_work_dir idle

DB=$WORK/idle.db
"$BIN" token list --database "$DB" >/dev/null   # creates the schema
python3 - "$DB" "$TOKENS" "$(( (CONNECTIONS + PER_TOKEN - 1) / PER_TOKEN ))" >"$WORK/tokens" <<'EOF'
import base64, hashlib, json, os, sqlite3, sys, time
db, count, printed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
now = int(time.time() * 1000)
permissions = json.dumps({"admin": False, "publish": [], "subscribe": [">"]})
c = sqlite3.connect(db)
rows = []
for i in range(count):
    token = "sb_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    if i < printed:
        print(token)
    expires = now + 86_400_000 if i % 2 else None
    rows.append(("tok_idle%07d" % i, "idle", hashlib.sha256(token.encode()).digest(), permissions, now, expires))
with c:
    c.executemany("INSERT INTO tokens (id, name, hash, permissions, created_at, expires_at) VALUES (?,?,?,?,?,?)", rows)
EOF

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SWITCHBOARD_HEARTBEAT_SECONDS=$HEARTBEAT "$BIN" serve --host 127.0.0.1 --port "$PORT" --database "$DB" \
    --log-level warning >"$WORK/serve.log" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 300); do
    grep -q listening "$WORK/serve.log" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.1
done

HOLD=$((WINDOW + 60))
left=$CONNECTIONS
while read -r token && [ "$left" -gt 0 ]; do
    n=$(( left < PER_TOKEN ? left : PER_TOKEN ))
    timeout $((HOLD + 30)) "$WSLOAD" connect --url "ws://127.0.0.1:$PORT/?token=$token" -n "$n" --hold "$HOLD" -q \
        >>"$WORK/wsload.log" 2>&1 &
    PIDS+=("$!")
    left=$((left - n))
done <"$WORK/tokens"

# Wait (bounded) until every connection is open: one descriptor each in the server.
for _ in $(seq 600); do
    open=$(ls "/proc/$SERVER/fd" | wc -l)
    [ "$open" -ge "$CONNECTIONS" ] && break
    sleep 0.1
done
echo "server descriptors open: $open (for $CONNECTIONS connections)"
sleep 3   # let the handshakes' work finish

ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
switches() { cat /proc/"$SERVER"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(switches)
if perf stat -e task-clock,context-switches -p "$SERVER" -- sleep "$WINDOW" 2>"$WORK/perf" ; then
    perf_line=$(grep -E "task-clock|context-switches" "$WORK/perf" | tr -s ' ' | paste -sd ';')
else
    sleep "$WINDOW"
    perf_line="perf unavailable"
fi
t1=$(ticks); s1=$(switches)
cpu_ms=$(( (t1 - t0) * 1000 / hz ))
echo "idle window ${WINDOW}s, $TOKENS tokens, $CONNECTIONS connections, heartbeat ${HEARTBEAT}s:"
echo "  server CPU: ${cpu_ms} ms = $(awk -v c="$cpu_ms" -v w="$WINDOW" 'BEGIN {printf "%.3f", c / w / 10}') % of one core"
echo "  context switches: $((s1 - s0)) ($(( (s1 - s0) / WINDOW ))/s)"
echo "  perf stat: $perf_line"
echo "  server RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/"$SERVER"/status)"
