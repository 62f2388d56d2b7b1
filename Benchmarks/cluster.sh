#!/usr/bin/env bash
# Cluster benchmark: the same fan-out on one plain node and across nodes of a Redis cluster
# (`serve --cluster`), with the load generator wsload (see Benchmarks/load-tools.sh).
#
#   Benchmarks/cluster.sh           # build (release), start redis-server and 3 nodes, run
#
# Setups (SUBS subscribers on one topic, 1 publisher, 64-byte payloads, RATE messages/s):
#   single   one node without --cluster; subscribers and publisher on it (today's path)
#   local    cluster node A; subscribers and publisher on A (every message goes via Redis)
#   cross    cluster; subscribers on node B, publisher on node A (--pub-url)
#   spread   cluster; SUBS/2 subscribers on B (topic t1) and SUBS/2 on C (t2) at once, a
#            publisher for each on A (two wsload processes at RATE each: deliveries summed,
#            latencies the worse of the two)
# Nodes run with --threads 1; all on this machine, so the numbers compare the paths, not
# what N machines would give.
#
# Environment: DURATION (s, default 10), REPEAT (default 3), SUBS (1000), RATE (50),
# SETUPS ("single local cross spread"), SWITCHBOARD_BIN, NO_BUILD=1, KEEP_RAW=1.
# Every run is bounded (wsload's own limits plus `timeout`); everything started is killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
BUILD=1; [ "${NO_BUILD:-0}" = 1 ] && BUILD=0
require_wsload "$ROOT" "$BUILD"
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
SUBS=${SUBS:-1000}
RATE=${RATE:-50}
SETUPS=${SETUPS:-"single local cross spread"}
command -v redis-server >/dev/null || { echo "cluster.sh: needs redis-server (scripts/setup.sh installs it)" >&2; exit 69; }

cd "$ROOT"
[ "$BUILD" = 1 ] && swift build -c release --product switchboard >&2
BIN=${SWITCHBOARD_BIN:-$(swift build -c release --show-bin-path)/switchboard}
[ -x "$BIN" ] || { echo "cluster.sh: $BIN not built" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

make_work_dir cluster

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly yes \
    --appendfsync everysec >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/redis.log" "Ready to accept connections"

# node NAME [ARGS…]: starts a node, sets PORT_NAME and PID_NAME.
node() {
    local name=$1 port
    shift
    port=$(free_port)
    "$BIN" serve --host 127.0.0.1 --port "$port" --anonymous-subscribe '>' --anonymous-publish '>' \
        --database "$WORK/$name.db" --threads 1 --log-level warning --request-rate 0 "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    declare -g "PORT_$name=$port" "PID_$name=$!"
    wait_for "$WORK/$name.log" "listening"
}
node single
for name in A B C; do node "$name" --cluster "redis://127.0.0.1:$REDIS_PORT"; done

PAYLOAD='{ts}'$(printf 'x%.0s' $(seq 44))

# load SUB_PORT PUB_PORT N SERVER_PID [TOPIC]: one wsload fan-out run, its RESULT json on stdout.
load() {
    local topic=${5:-t}
    timeout $((DURATION + 90)) "$WSLOAD" fanout --url "ws://127.0.0.1:$1/" --pub-url "ws://127.0.0.1:$2/" -n "$3" -p 1 \
        --sub-msg '{"op":"sub","topic":"'"$topic"'"}' --pub-msg '{"op":"pub","topic":"'"$topic"'","data":"'"$PAYLOAD"'"}' \
        -r "$RATE" -t "$DURATION" --server-pid "$4" -q |
        sed -n 's/^RESULT //p'
}

# run SETUP: one RESULT json per line (two for spread).
run() {
    case $1 in
    single) load "$PORT_single" "$PORT_single" "$SUBS" "$PID_single" ;;
    local) load "$PORT_A" "$PORT_A" "$SUBS" "$PID_A" ;;
    cross) load "$PORT_B" "$PORT_A" "$SUBS" "$PID_B" ;;
    spread)
        load "$PORT_B" "$PORT_A" $((SUBS / 2)) "$PID_B" t1 >"$WORK/spread.B" &
        local other=$!
        load "$PORT_C" "$PORT_A" $((SUBS / 2)) "$PID_C" t2
        wait "$other"
        cat "$WORK/spread.B"
        ;;
    *) echo "unknown setup $1" >&2; exit 1 ;;
    esac
    sleep 1  # let the nodes drop the closed connections before the next run
}

echo "load before: $(uptime)" >&2
declare -A RAW
for i in $(seq "$REPEAT"); do
    for setup in $SETUPS; do
        result=$(run "$setup")
        [ -n "$result" ] || { echo "no RESULT from $setup" >&2; exit 1; }
        [ "${KEEP_RAW:-0}" = 1 ] && echo "$setup $result" >&2
        # spread: deliveries summed over its two runs, latencies the worse of the two.
        RAW[$setup]+=$(jq -sc '{deliveries_per_s: (map(.deliveries_per_s) | add), missing: (map(.missing) | add),
            p50: (map(.lat_us.p50) | max), p99: (map(.lat_us.p99) | max)}' <<<"$result")$'\n'
    done
done
echo "load after: $(uptime)" >&2

echo
echo "Cluster fan-out: $SUBS subscribers on one topic, 1 publisher at $RATE msg/s, 64-byte payloads,"
echo "${DURATION}s windows, median of $REPEAT; nodes --threads 1, Redis appendfsync everysec. Latencies in µs."
echo
echo "| setup | deliveries/s | lat p50 | lat p99 | missing |"
echo "| --- | ---: | ---: | ---: | ---: |"
for setup in $SETUPS; do
    r=${RAW[$setup]}
    printf '| %s | %s | %s | %s | %s |\n' "$setup" "$(fmt "$(median .deliveries_per_s <<<"$r")")" \
        "$(fmt "$(median .p50 <<<"$r")")" "$(fmt "$(median .p99 <<<"$r")")" "$(median .missing <<<"$r")"
done
