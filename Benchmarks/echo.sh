#!/usr/bin/env bash
# Echo benchmark: Switchboard's echo-server against Node `ws` (ws-echo.js), side by side
# in the same run, so the ratio holds even when the machine is noisy.
#
#   Benchmarks/echo.sh [--runs N] [--duration S] [--only a,b,c] [--no-build]
#
# Scenarios (each run starts a fresh server; servers alternate within a run):
#   a  wsload echo -c 64 -s 64 -d 16 -t S              round trips/s   (higher is better)
#   b  wsload echo -c 16 -s 65536 -d 4 -t S --binary   MB/s each way   (higher is better)
#   c  wsload connect -n 10000 --hold 5                bytes of RSS per idle connection
# The server runs on CPU 0 (`taskset -c 0`, ours with --threads 1), wsload on CPU 1.
# "other%" is the CPU that neither the server nor wsload used during the run, in % of one
# core: anything above ~10 means another process disturbed that run.
# Bounded: every wsload run is bounded by its own timers; servers are killed on exit.
set -euo pipefail

RUNS=1
DURATION=10
ONLY="a,b,c"
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "echo.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
require_wsload "$ROOT" "$BUILD"
WS_ECHO="$(require_peer "$ROOT" ws-echo.js)"
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
PORT_OURS=${PORT_OURS:-19101}
PORT_WS=${PORT_WS:-19102}

# 10000 connections need 10000+ descriptors in the server and in wsload. Ask for 65536;
# where the hard limit is lower (containers), take the hard limit if it is enough.
if ! ulimit -n 65536 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10200 ]; then
        echo "echo.sh: RLIMIT_NOFILE is $(ulimit -n) (hard limit); scenario c needs 10200" >&2
        exit 1
    fi
fi

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && swift build -c release --product echo-server >&2)
fi
ECHO_SERVER="$(cd "$ROOT" && swift build -c release --show-bin-path)/echo-server"
[ -x "$ECHO_SERVER" ] || { echo "echo.sh: $ECHO_SERVER not built" >&2; exit 1; }

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

start_server() {  # ours|ws
    if [ "$1" = ours ]; then
        taskset -c 0 "$ECHO_SERVER" --port "$PORT_OURS" --threads 1 >/dev/null &
        SERVER_PID=$!
        PORT=$PORT_OURS
    else
        taskset -c 0 node "$WS_ECHO" --port "$PORT_WS" >/dev/null &
        SERVER_PID=$!
        PORT=$PORT_WS
    fi
    wait_for_port "$PORT"
}

busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

# run_one SERVER SCENARIO -> prints "value other%"
run_one() {
    local server=$1 scenario=$2 args field
    start_server "$server"
    case "$scenario" in
        a) args=(echo -c 64 -s 64 -d 16 -t "$DURATION"); field=msgs_per_s ;;
        b) args=(echo -c 16 -s 65536 -d 4 -t "$DURATION" --binary); field=mb_per_s ;;
        c) args=(connect -n 10000 --hold 5); field=rss_per_conn_bytes ;;
    esac
    local hz start_busy start_t result end_busy end_t
    hz=$(getconf CLK_TCK)
    start_busy=$(busy_jiffies); start_t=$(date +%s.%N)
    result=$(taskset -c 1 "$WSLOAD" "${args[@]}" --url "ws://127.0.0.1:$PORT/" --server-pid "$SERVER_PID" -q \
        | grep '^RESULT ' | cut -c8-)
    end_busy=$(busy_jiffies); end_t=$(date +%s.%N)
    stop_server
    python3 - "$field" "$result" "$start_busy" "$end_busy" "$start_t" "$end_t" "$hz" <<'PY'
import json, sys
field, raw, b0, b1, t0, t1, hz = sys.argv[1:]
r = json.loads(raw)
busy = (int(b1) - int(b0)) / int(hz) / (float(t1) - float(t0)) * 100
# The window wsload measures CPU over is shorter than the whole run (connect, warm-up,
# drain), so this is an estimate; in connect mode the two are idle most of the time.
other = max(0.0, busy - r.get("cpu_pct", 0) - r.get("server_cpu_pct", 0))
errors = r.get("errors", 0)
print(f'{r[field]} {other:.0f} {errors} {r.get("server_cpu_pct", 0):.0f}')
PY
}

declare -A NAME=([a]="echo 64 B, 64 conns, depth 16 (msgs/s)" [b]="echo 64 KiB binary, 16 conns, depth 4 (MB/s)" [c]="idle connection, 10000 conns (bytes RSS each)")

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)  runs=$RUNS duration=${DURATION}s"
printf '%-46s %4s %14s %14s %8s %9s %6s %15s %8s\n' scenario run switchboard ws ratio "other%" errors "server CPU%" "per-CPU"
for scenario in a b c; do
    case ",$ONLY," in *",$scenario,"*) ;; *) continue ;; esac
    for run in $(seq 1 "$RUNS"); do
        # Alternate which server goes first so drift in machine load does not favour one.
        if [ $((run % 2)) = 1 ]; then order=(ours ws); else order=(ws ours); fi
        declare -A value=() other=() errs=() cpu=()
        for server in "${order[@]}"; do
            read -r v o e c < <(run_one "$server" "$scenario")
            value[$server]=$v; other[$server]=$o; errs[$server]=$e; cpu[$server]=$c
        done
        ratio=$(python3 -c "o,w=${value[ours]},${value[ws]}; print(f'{o/w:.2f}x' if w else '-')")
        # Throughput per server CPU-second, ours / ws: what the ratio would be if both
        # servers had a whole core (on a busy machine neither may get one).
        percpu=$(python3 -c "
o,w,co,cw='${value[ours]}','${value[ws]}','${cpu[ours]}','${cpu[ws]}'
print(f'{(float(o)/float(co))/(float(w)/float(cw)):.2f}x' if '$scenario' != 'c' and float(co) > 0 and float(cw) > 0 and float(w) > 0 else '-')")
        printf '%-46s %4s %14.1f %14.1f %8s %4s/%-4s %3s/%-3s %7s/%-7s %8s\n' "${NAME[$scenario]}" "$run" \
            "${value[ours]}" "${value[ws]}" "$ratio" "${other[ours]}" "${other[ws]}" "${errs[ours]}" "${errs[ws]}" \
            "${cpu[ours]}" "${cpu[ws]}" "$percpu"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ratio = switchboard / ws (a, b: higher is better; c: lower is better). other%, errors, server CPU%: ours/ws."
echo "per-CPU = (ours per server CPU-second) / (ws per server CPU-second), for when a server did not get a whole core."
