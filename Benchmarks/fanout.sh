#!/usr/bin/env bash
# Fan-out benchmark: `switchboard serve` against Node `ws` (the ws-pubsub.js peer), both in
# the same run, with the neutral load generator wsload (see Benchmarks/load-tools.sh).
#
#   Benchmarks/fanout.sh            # build (release), then run both scenarios
#
# Scenarios (1000 subscribers on one topic, 1 publisher, 64-byte payloads unless PAYLOAD is set):
#   max   -r 0 -d 16   the fastest rate at which full fan-outs complete, 16 messages in flight
#   r50   -r 50        50 messages/s open loop = 50k deliveries/s
# Servers are pinned to CPU 0 (`taskset -c 0`, switchboard with --threads 1), wsload to CPU 1.
# Runs alternate between the two servers; each cell is the median of REPEAT runs.
#
# Environment: DURATION (s, default 10), REPEAT (default 3), SUBS (1000), SCENARIOS ("max r50"),
# SERVERS ("ours ws"), RETAIN (replay_retain rules for switchboard, e.g. "t": the topic is
# retained, so every message is committed before it is delivered), SWITCHBOARD_BIN (a
# switchboard binary to run instead of this build's, e.g. an older build to compare),
# SWIFT_BUILD_FLAGS (extra `swift build` flags, e.g. "-Xswiftc -g" for a profiling build),
# NO_BUILD=1 (use the binary already built), KEEP_RAW=1 (print every RESULT line),
# PAYLOAD=json1k (each message's data is a 1 KiB JSON array of records instead of 64 bytes),
# DEFLATE=1 (permessage-deflate: switchboard --deflate on, ws-pubsub.js --deflate, and every
# wsload connection offers it with --deflate; Benchmarks/fanout-deflate.sh runs both ways).
# Every run is bounded (wsload's own limits plus `timeout`); servers are killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
BUILD=1; [ "${NO_BUILD:-0}" = 1 ] && BUILD=0
require_wsload "$ROOT" "$BUILD"
PEER=$(require_peer "$ROOT" ws-pubsub.js)
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
SUBS=${SUBS:-1000}
SCENARIOS=${SCENARIOS:-"max r50"}
SERVERS=${SERVERS:-"ours ws"}

cd "$ROOT"
if [ "${NO_BUILD:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    swift build -c release --product switchboard ${SWIFT_BUILD_FLAGS:-} >&2
fi
# shellcheck disable=SC2086
BIN=${SWITCHBOARD_BIN:-$(swift build -c release --show-bin-path ${SWIFT_BUILD_FLAGS:-})/switchboard}
[ -x "$BIN" ] || { echo "fanout.sh: $BIN not built" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((SUBS * 2 + 100)) ] ||
    { echo "ulimit -n is $(ulimit -n); need $((SUBS * 2 + 100))" >&2; exit 1; }

make_work_dir fanout

DEFLATE_FLAG=() WS_DEFLATE=() WSLOAD_DEFLATE=()
if [ "${DEFLATE:-0}" = 1 ]; then
    DEFLATE_FLAG=(--deflate on) WS_DEFLATE=(--deflate) WSLOAD_DEFLATE=(--deflate)
fi

OURS_PORT=$(free_port)
# No request rate limit: the publisher runs at full speed, as it does against ws.
RETAIN_ENV=()
[ -n "${RETAIN:-}" ] && RETAIN_ENV=("SWITCHBOARD_REPLAY_RETAIN=$RETAIN")
env "${RETAIN_ENV[@]}" taskset -c 0 "$BIN" serve --host 127.0.0.1 --port "$OURS_PORT" --anonymous-subscribe '>' --anonymous-publish '>' \
    --database "$WORK/fanout.db" --threads 1 --log-level warning --request-rate 0 "${DEFLATE_FLAG[@]}" >"$WORK/ours.log" 2>&1 &
OURS_PID=$!
PIDS+=("$OURS_PID")
wait_for "$WORK/ours.log" "listening"

WS_PORT= WS_PID=
if [[ " $SERVERS " == *" ws "* ]]; then
    WS_PORT=$(free_port)
    NODE_PATH=/usr/share/nodejs taskset -c 0 node "$PEER" --port "$WS_PORT" "${WS_DEFLATE[@]}" >"$WORK/ws.log" 2>&1 &
    WS_PID=$!
    PIDS+=("$WS_PID")
    wait_for "$WORK/ws.log" "listening"
fi

SUB_MSG='{"op":"sub","topic":"t"}'
if [ "${PAYLOAD:-}" = json1k ]; then
    # A JSON object as apps publish them: the 20-byte marker, then records whose keys repeat
    # (as in real JSON, which is what makes it compress); 1024 bytes of data in all.
    DATA=$(python3 -c '
import json
records = [{"id": i, "sku": "SKU-%05d" % (i * 7919 % 100000), "price": round(i * 3.17 % 97, 2),
            "qty": i * 13 % 50, "tags": ["red", "sale"] if i % 3 else ["blue"]} for i in range(40)]
def document(records, pad=0):
    return json.dumps({"ts": "{ts}", "items": records, "n": "x" * pad}, separators=(",", ":"))
target = 1024 - 16  # wsload writes 20 bytes for the 4 of {ts}
while len(document(records)) > target:
    records.pop()
print(document(records, target - len(document(records))))')
else
    DATA='"{ts}'$(printf 'x%.0s' $(seq 44))'"'  # 20-byte marker + 44 = 64 bytes of data
fi
PUB_MSG='{"op":"pub","topic":"t","data":'$DATA'}'

# run SERVER SCENARIO -> one RESULT json on stdout
run() {
    local port pid
    if [ "$1" = ours ]; then port=$OURS_PORT pid=$OURS_PID; else port=$WS_PORT pid=$WS_PID; fi
    local pace
    case $2 in
    max) pace=(-r 0 -d 16) ;;
    r50) pace=(-r 50) ;;
    *) echo "unknown scenario $2" >&2; exit 1 ;;
    esac
    taskset -c 1 timeout $((DURATION + 90)) "$WSLOAD" fanout --url "ws://127.0.0.1:$port/" -n "$SUBS" -p 1 \
        --sub-msg "$SUB_MSG" --pub-msg "$PUB_MSG" "${pace[@]}" -t "$DURATION" --server-pid "$pid" "${WSLOAD_DEFLATE[@]}" -q |
        sed -n 's/^RESULT //p'
    sleep 1  # let the server drop the closed connections before the next run
}

echo "load before: $(uptime)" >&2
declare -A RAW
for scenario in $SCENARIOS; do
    for i in $(seq "$REPEAT"); do
        for server in $SERVERS; do
            result=$(run "$server" "$scenario")
            [ -n "$result" ] || { echo "no RESULT from $server $scenario" >&2; exit 1; }
            [ "${KEEP_RAW:-0}" = 1 ] && echo "$server $scenario $result" >&2
            RAW[$server.$scenario]+="$result"$'\n'
        done
    done
done
echo "load after: $(uptime)" >&2


echo
echo "Fan-out: $SUBS subscribers on one topic${RETAIN:+ (retained: $RETAIN)}, 1 publisher, ${PAYLOAD:-64-byte} payloads${DEFLATE:+ (DEFLATE=$DEFLATE)}, ${DURATION}s windows, median of $REPEAT;"
echo "servers on CPU 0 (switchboard --threads 1), wsload on CPU 1. Latencies in µs."
echo
echo "| scenario | server | deliveries/s | lat p50 | lat p99 | lat_rx p50 | lat_rx p99 | missing | server CPU % | server CPU µs/delivery | server RSS MB |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for scenario in $SCENARIOS; do
    for server in $SERVERS; do
        r=${RAW[$server.$scenario]}
        d=$(median .deliveries_per_s <<<"$r")
        declare "D_${server}_$scenario=$d"
        declare "P99_${server}_$scenario=$(median .lat_us.p99 <<<"$r")"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$scenario" "$server" "$(fmt "$d")" \
            "$(fmt "$(median .lat_us.p50 <<<"$r")")" "$(fmt "$(median .lat_us.p99 <<<"$r")")" \
            "$(fmt "$(median .lat_rx_us.p50 <<<"$r")")" "$(fmt "$(median .lat_rx_us.p99 <<<"$r")")" \
            "$(median .missing <<<"$r")" "$(fmt "$(median .server_cpu_pct <<<"$r")")" \
            "$(fmt "$(median '.server_cpu_pct * 1e4 / (.deliveries_per_s + 1e-9)' <<<"$r")" 2)" \
            "$(fmt "$(median '.server_rss_kb / 1024' <<<"$r")" 1)"
    done
done
echo
[[ " $SERVERS " == *" ours "* && " $SERVERS " == *" ws "* ]] || exit 0
for scenario in $SCENARIOS; do
    ours=D_ours_$scenario ws=D_ws_$scenario p_ours=P99_ours_$scenario p_ws=P99_ws_$scenario
    printf '%s: deliveries/s ours/ws = %s×; lat p99 ours/ws = %s×\n' "$scenario" \
        "$(jq -n "${!ours} / ${!ws} * 100 | round / 100")" "$(jq -n "${!p_ours} / ${!p_ws} * 100 | round / 100")"
done
