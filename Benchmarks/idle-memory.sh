#!/usr/bin/env bash
# Idle memory: the RSS one idle connection costs `switchboard serve --threads 1` (release),
# for plain connections (handshake only) and for connections subscribed to a topic (each
# sent one `sub` request and got its answer, so its read and write paths have run once).
#
#   Benchmarks/idle-memory.sh                       # 10000 connections, both kinds
#   COUNTS="10000 19000" KINDS="plain subscribed" REPEAT=1 HEARTBEAT=2 SETTLE=8 NO_BUILD=1 Benchmarks/idle-memory.sh
#
# Each cell starts a fresh server (anonymous access, temporary database, heartbeat HEARTBEAT),
# reads its VmRSS, opens the connections with wsload, waits until they are all
# open and settled, reads VmRSS again: (after − before) / connections. A cell is the median
# of REPEAT servers. RSS is not CPU-noise sensitive, so a busy machine gives the same figures.
# A count is bounded by RLIMIT_NOFILE (the server holds one descriptor per connection).
# Loopback only; wsload holds the connections for a fixed time; servers are killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
BUILD=1; [ "${NO_BUILD:-0}" = 1 ] && BUILD=0
require_wsload "$ROOT" "$BUILD"
COUNTS=${COUNTS:-10000}
KINDS=${KINDS:-"plain subscribed"}
REPEAT=${REPEAT:-1}
SETTLE=${SETTLE:-5}
# Seconds between pings to each client (30 as deployed); a HEARTBEAT under SETTLE measures
# connections that have answered pings too.
HEARTBEAT=${HEARTBEAT:-30}

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    swift build -c release --product switchboard >&2
fi
BIN=${SWITCHBOARD_BIN:-$(swift build -c release --show-bin-path)/switchboard}
[ -x "$BIN" ] || { echo "idle-memory.sh: $BIN not built" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for count in $COUNTS; do
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((count + 100)) ] ||
        { echo "idle-memory.sh: RLIMIT_NOFILE is $(ulimit -n); $count connections need $((count + 100))" >&2; exit 1; }
done

make_work_dir idle-memory

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# measure KIND COUNT -> bytes of RSS per connection
measure() {
    local kind=$1 count=$2 port server loader before after open hold=$((SETTLE + 60))
    port=$(free_port)
    rm -f "$WORK/idle.db"*
    SWITCHBOARD_MAX_CONNECTIONS_PER_IP=0 SWITCHBOARD_HANDSHAKE_RATE=0 SWITCHBOARD_HEARTBEAT_SECONDS=$HEARTBEAT \
        "$BIN" serve --host 127.0.0.1 --port "$port" --anonymous-subscribe '>' --anonymous-publish '>' \
        --database "$WORK/idle.db" --threads 1 --log-level warning >"$WORK/serve.log" 2>&1 &
    server=$!
    PIDS+=("$server")
    wait_for "$WORK/serve.log" listening
    sleep 1
    before=$(rss_kb "$server")
    if [ "$kind" = plain ]; then
        timeout $((hold + 60)) "$WSLOAD" connect --url "ws://127.0.0.1:$port/" -n "$count" --hold "$hold" -q \
            >"$WORK/wsload.log" 2>&1 &
    else
        # One publisher, to another topic once a second: the subscribers hear nothing after
        # their `subscribed` answer.
        timeout $((hold + 60)) "$WSLOAD" fanout --url "ws://127.0.0.1:$port/" -n "$count" -p 1 \
            --sub-msg '{"op":"sub","topic":"idle"}' --pub-msg '{"op":"pub","topic":"other","data":"{ts}"}' \
            -r 1 -t "$hold" -q >"$WORK/wsload.log" 2>&1 &
    fi
    loader=$!
    PIDS+=("$loader")
    open=0
    for _ in $(seq 1200); do
        open=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 | wc -l)
        [ "$open" -ge "$count" ] && break
        sleep 0.1
    done
    [ "$open" -ge "$count" ] || { echo "only $open descriptors open for $count connections" >&2; cat "$WORK/wsload.log" >&2; exit 1; }
    sleep "$SETTLE"
    after=$(rss_kb "$server")
    kill "$loader" "$server" 2>/dev/null || true
    wait "$loader" "$server" 2>/dev/null || true
    echo $(( (after - before) * 1024 / count ))
}

echo "load: $(uptime)" >&2
echo "| connections | kind | RSS per connection (bytes) |"
echo "| ---: | --- | ---: |"
for count in $COUNTS; do
    for kind in $KINDS; do
        values=()
        for _ in $(seq "$REPEAT"); do values+=("$(measure "$kind" "$count")"); done
        median=$(printf '%s\n' "${values[@]}" | sort -n | sed -n "$(( (${#values[@]} + 1) / 2 ))p")
        echo "| $count | $kind | $median |"
        if [ "$REPEAT" -gt 1 ]; then echo "  runs: ${values[*]}" >&2; fi
    done
done
