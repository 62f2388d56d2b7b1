#!/usr/bin/env bash
# Replay log end to end (issue 6's targets), through sockets against the real
# `switchboard serve` release binary: the server on CPU 0 (--threads 1, the writer and reader
# threads share that CPU), the client (.build/release/ReplayBenchmarks e2e-*) on CPU 1.
#
#   Benchmarks/replay.sh
#
# 1. ingest: PUBLISHERS publishers ("1 16"), each on its own connection and topic
#    bench.pN, pipelining publishes with ids (64-byte payloads, WINDOW unanswered at most per
#    publisher), INGEST_TOTAL messages in all; rate = acks received / time to the last ack.
#    A fresh database per run.
# 2. replay: REPLAY_COUNT messages of bench.t written straight into the log (ReplayBenchmarks
#    prefill, server stopped), then one client subscribes with since 0; rate = messages received
#    / time from the sub to the last one (seqs checked contiguous). A fresh server per run,
#    same database (in the OS page cache).
# Each cell is the median of REPEAT runs (all runs are printed). Server CPU % is over the
# measured window (100 = the whole CPU 0); CPU 0 is shared with whatever else runs on the
# machine, so µs of server CPU per message (and its inverse, msg/s per server CPU-second)
# are given too: what the server costs, whatever share of the CPU it got.
#
# Environment: REPEAT (3), PUBLISHERS ("1 16"), INGEST_TOTAL (1000000), WINDOW (4096),
# REPLAY_COUNT (1000000), SWIFT_BUILD_FLAGS (e.g. "-Xswiftc -g" for perf), NO_BUILD=1,
# PERF=ingest1|ingest16|replay (record the server of the first such run with
# `perf record -e cpu-clock -g`, report in $PERF_OUT, default /tmp/switchboard-replay.perf).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
REPEAT=${REPEAT:-3}
PUBLISHERS=${PUBLISHERS:-"1 16"}
INGEST_TOTAL=${INGEST_TOTAL:-1000000}
WINDOW=${WINDOW:-4096}
REPLAY_COUNT=${REPLAY_COUNT:-1000000}
PERF=${PERF:-}
PERF_OUT=${PERF_OUT:-/tmp/switchboard-replay.perf}

cd "$ROOT"
if [ "${NO_BUILD:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    swift build -c release --product switchboard ${SWIFT_BUILD_FLAGS:-} >&2
    # shellcheck disable=SC2086
    swift build -c release --product ReplayBenchmarks ${SWIFT_BUILD_FLAGS:-} >&2
fi
# shellcheck disable=SC2086
BIN_DIR=$(swift build -c release --show-bin-path ${SWIFT_BUILD_FLAGS:-})
SERVE=$BIN_DIR/switchboard
CLIENT=$BIN_DIR/ReplayBenchmarks
[ -x "$SERVE" ] && [ -x "$CLIENT" ] || { echo "missing $SERVE or $CLIENT" >&2; exit 1; }

WORK=$(mktemp -d /tmp/switchboard-replay.XXXXXX)
SERVER_PID=
PERF_PID=
stop_server() {
    if [ -n "$PERF_PID" ]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
        PERF_PID=
    fi
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# start_server DB PERF_NAME: serve on CPU 0 retaining bench.>, wait for its listening line.
start_server() {
    PORT=$(free_port)
    # No request rate limit: one publisher connection is driven far past its default.
    SWITCHBOARD_REPLAY_RETAIN="bench.>" SWITCHBOARD_REPLAY_MAX_BYTES=0 SWITCHBOARD_REQUEST_RATE=0 taskset -c 0 "$SERVE" serve \
        --host 127.0.0.1 --port "$PORT" --anonymous-subscribe '>' --anonymous-publish '>' \
        --database "$1" --threads 1 --log-level warning >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
        sleep 0.1
    done
    if [ "$PERF" = "$2" ]; then
        PERF=done
        perf record -e cpu-clock -g -o "$PERF_OUT.data" -p "$SERVER_PID" >/dev/null 2>&1 &
        PERF_PID=$!
        sleep 0.5
    fi
}

finish_perf() {
    if [ -f "$PERF_OUT.data" ]; then
        perf report -i "$PERF_OUT.data" --no-children --percent-limit 1 --stdio 2>/dev/null >"$PERF_OUT" || true
        echo "perf report: $PERF_OUT" >&2
    fi
}

declare -A RAW
echo "load before: $(uptime)" >&2
for i in $(seq "$REPEAT"); do
    for p in $PUBLISHERS; do
        rm -f "$WORK"/ingest.db*
        start_server "$WORK/ingest.db" "ingest$p"
        line=$(taskset -c 1 timeout 300 "$CLIENT" e2e-ingest "$PORT" "$p" "$INGEST_TOTAL" "$WINDOW" "$SERVER_PID")
        stop_server
        echo "$line" | grep -v '^RESULT' >&2
        RAW[ingest$p]+="$(echo "$line" | sed -n 's/^RESULT //p')"$'\n'
    done
done

rm -f "$WORK"/replay.db*
"$CLIENT" prefill "$WORK/replay.db" bench.t "$REPLAY_COUNT" >&2
for i in $(seq "$REPEAT"); do
    start_server "$WORK/replay.db" replay
    line=$(taskset -c 1 timeout 300 "$CLIENT" e2e-replay "$PORT" bench.t "$REPLAY_COUNT" 0 "$SERVER_PID")
    stop_server
    echo "$line" | grep -v '^RESULT' >&2
    RAW[replay]+="$(echo "$line" | sed -n 's/^RESULT //p')"$'\n'
done
echo "load after: $(uptime)" >&2
finish_perf


echo
echo "Replay log end to end: switchboard serve on CPU 0 (--threads 1), client on CPU 1; 64-byte payloads;"
echo "median of $REPEAT runs."
echo
echo "| what | msg/s | server CPU % | server CPU µs/msg | msg/s per server CPU-second | target msg/s | runs (msg/s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
# row LABEL RESULTS COUNT_FIELD TARGET
row() {
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$(fmt "$(median .rate <<<"$2")")" \
        "$(fmt "$(median .server_cpu_pct <<<"$2")")" "$(fmt "$(median ".server_cpu_s * 1e6 / $3" <<<"$2")" 2)" \
        "$(fmt "$(median "$3 / .server_cpu_s" <<<"$2")")" "$4" "$(jq -s -r 'map(.rate) | join(" ")' <<<"$2")"
}
for p in $PUBLISHERS; do
    row "ingest, $p publisher(s), window $WINDOW each, $INGEST_TOTAL acked" "${RAW[ingest$p]}" .acked 100000
done
row "replay since 0, $REPLAY_COUNT messages to 1 client" "${RAW[replay]}" .received 300000
