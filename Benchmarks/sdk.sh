#!/usr/bin/env bash
# SwitchboardClient (the SDK) against a raw-protocol client, in the same run, through sockets
# against the real `switchboard serve` release binary: the server on CPU 0 (--threads 1), the
# clients (.build/release/SDKBenchmarks, raw and sdk in turn) on CPU 1.
#
#   Benchmarks/sdk.sh
#
# 1. subscribe: SUB_COUNT messages of the retained topic bench.t (64-byte payloads) written
#    straight into the log (ReplayBenchmarks prefill, server stopped); then one client
#    subscribes from the beginning and receives them all, seqs checked contiguous; rate =
#    messages / time from the sub to the last one. Target: sdk ≥ 70 % of raw.
# 2. publish: PUB_TOTAL acked publishes (64-byte payloads) to the topic pub.t, not retained,
#    WINDOW in flight (sdk: WINDOW tasks, each awaiting its publish); rate = acks / time to
#    the last one. Target: sdk ≥ 100 000 msg/s.
# Runs alternate raw, sdk; each cell is the median of REPEAT runs (all runs are printed).
# CPU µs/msg is a process's CPU time per message, client and server: what each costs, whatever
# share of its CPU it got on a machine shared with other work (the server's figure includes the
# client's connection handshake).
#
# Environment: REPEAT (3), SUB_COUNT (1000000), PUB_TOTAL (1000000), WINDOW (256),
# SWIFT_BUILD_FLAGS (e.g. "-Xswiftc -g" for perf), NO_BUILD=1, PERF=subscribe|publish (record
# the sdk client of the first such run with `perf record -e cpu-clock -g`, report in
# $PERF_OUT, default /tmp/switchboard-sdk.perf).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
REPEAT=${REPEAT:-3}
SUB_COUNT=${SUB_COUNT:-1000000}
PUB_TOTAL=${PUB_TOTAL:-1000000}
WINDOW=${WINDOW:-256}
PERF=${PERF:-}
PERF_OUT=${PERF_OUT:-/tmp/switchboard-sdk.perf}

cd "$ROOT"
if [ "${NO_BUILD:-0}" != 1 ]; then
    for product in switchboard ReplayBenchmarks SDKBenchmarks; do
        # shellcheck disable=SC2086
        swift build -c release --product "$product" ${SWIFT_BUILD_FLAGS:-} >&2
    done
fi
# shellcheck disable=SC2086
BIN_DIR=$(swift build -c release --show-bin-path ${SWIFT_BUILD_FLAGS:-})
SERVE=$BIN_DIR/switchboard
PREFILL=$BIN_DIR/ReplayBenchmarks
CLIENT=$BIN_DIR/SDKBenchmarks
for bin in "$SERVE" "$PREFILL" "$CLIENT"; do [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }; done

WORK=$(mktemp -d /tmp/switchboard-sdk.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


"$PREFILL" prefill "$WORK/sdk.db" bench.t "$SUB_COUNT" >&2
PORT=$(free_port)
# No request rate limit: one publisher connection is driven far past its default.
SWITCHBOARD_REPLAY_RETAIN="bench.t" SWITCHBOARD_REPLAY_MAX_BYTES=0 SWITCHBOARD_REQUEST_RATE=0 taskset -c 0 "$SERVE" serve \
    --host 127.0.0.1 --port "$PORT" --anonymous-subscribe '>' --anonymous-publish '>' \
    --database "$WORK/sdk.db" --threads 1 --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.1
done

# The server's CPU time (user + system) in clock ticks.
server_ticks() { awk '{ print $14 + $15 }' <(sed 's/.*) //; s/^/x x /' "/proc/$SERVER_PID/stat"); }
TICKS=$(getconf CLK_TCK)

# client MODE KIND: one run on CPU 1, its RESULT json (with the server's CPU seconds added)
# on stdout, its line on stderr.
client() {
    local args
    case $1 in
    subscribe) args=(subscribe "$PORT" bench.t "$SUB_COUNT") ;;
    publish) args=(publish "$PORT" pub.t "$PUB_TOTAL" --window "$WINDOW") ;;
    esac
    local output before
    before=$(server_ticks)
    if [ "$PERF" = "$1" ] && [ "$2" = sdk ]; then
        PERF=done
        output=$(perf record -e cpu-clock -g -o "$PERF_OUT.data" -- taskset -c 1 timeout 300 "$CLIENT" "${args[@]}" --client "$2" 2>/dev/null)
        perf report -i "$PERF_OUT.data" --no-children --percent-limit 1 --stdio 2>/dev/null >"$PERF_OUT" || true
        echo "perf report: $PERF_OUT" >&2
    else
        output=$(taskset -c 1 timeout 300 "$CLIENT" "${args[@]}" --client "$2")
    fi
    local used=$(( $(server_ticks) - before ))
    grep -v '^RESULT' <<<"$output" >&2
    sed -n 's/^RESULT //p' <<<"$output" | jq -c ". + {server_cpu_s: ($used / $TICKS)}"
}

declare -A RAW
echo "load before: $(uptime)" >&2
for mode in subscribe publish; do
    for i in $(seq "$REPEAT"); do
        for kind in raw sdk; do
            result=$(client "$mode" "$kind")
            [ -n "$result" ] || { echo "no RESULT from $mode $kind" >&2; exit 1; }
            RAW[$mode.$kind]+="$result"$'\n'
        done
    done
done
echo "load after: $(uptime)" >&2


echo
echo "SwitchboardClient against a raw-protocol client (the WebSockets client speaking docs/protocol.md by hand):"
echo "switchboard serve on CPU 0 (--threads 1), the client on CPU 1; 64-byte payloads; median of $REPEAT runs."
echo
echo "| what | client | msg/s | client CPU % | client CPU µs/msg | server CPU % | server CPU µs/msg | runs (msg/s) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for mode in subscribe publish; do
    case $mode in
    subscribe) what="1 subscriber, $SUB_COUNT retained messages from the beginning" ;;
    publish) what="acked publish to a non-retained topic, $PUB_TOTAL, $WINDOW in flight" ;;
    esac
    for kind in raw sdk; do
        r=${RAW[$mode.$kind]}
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$what" "$kind" "$(fmt "$(median .rate <<<"$r")")" \
            "$(fmt "$(median .client_cpu_pct <<<"$r")")" "$(fmt "$(median .client_cpu_us <<<"$r")" 2)" \
            "$(fmt "$(median '.server_cpu_s / .seconds * 100' <<<"$r")")" \
            "$(fmt "$(median '.server_cpu_s * 1e6 / .count' <<<"$r")" 2)" \
            "$(jq -s -r 'map(.rate) | join(" ")' <<<"$r")"
    done
done
echo
sub_sdk=$(median .rate <<<"${RAW[subscribe.sdk]}")
sub_raw=$(median .rate <<<"${RAW[subscribe.raw]}")
pub_sdk=$(median .rate <<<"${RAW[publish.sdk]}")
echo "subscribe: sdk/raw = $(jq -n "$sub_sdk / $sub_raw * 100 | round") % (target ≥ 70 %)"
echo "publish: sdk $(fmt "$pub_sdk") acked msg/s (target ≥ 100000)"
