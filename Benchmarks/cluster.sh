#!/usr/bin/env bash
# Cluster benchmark: SUBS subscribers of one topic spread evenly over three nodes of a Redis
# cluster (`serve --cluster`), one publisher on the first node, against the same load on one
# node; with the load generator wsload (see Benchmarks/load-tools.sh).
#
#   Benchmarks/cluster.sh           # build (release), start redis-server and 4 nodes, run
#
# Setups (SUBS subscribers on topic t, 1 publisher on the first node, 64-byte payloads):
#   single     one node without --cluster, everything on it (no Redis)
#   cluster1   one cluster node A, everything on it (every message goes through Redis)
#   cluster3   cluster nodes A, B, C with a third of the subscribers each, the publisher on A;
#              B's and C's deliveries cross nodes through Redis (A's do too: a cluster node
#              delivers what Redis sends back, its own publishes included)
# Rates (RATES): 50 = -r 50 (open loop, 50 msg/s); max = -r 0 -d 16 (as Benchmarks/fanout.sh:
# the fastest rate at which full fan-outs complete, 16 messages in flight).
#
# wsload sends to one server per run, so cluster3 runs three wsload processes at once, one
# per node. The one on A holds A's subscribers and the publisher (warm-up 1 s, window
# DURATION+2 s); those on B and C hold only subscribers (their own publisher sends one
# message to an unused topic, then nothing) and measure a DURATION-s window that starts 1 s
# later, so it lies inside the publishing period. Latencies compare CLOCK_MONOTONIC stamps
# across the processes (one clock on one machine). With -r 0 the publisher waits for its own
# subscribers only (those on A, the busiest node); B and C may lag without slowing it, which
# shows as a delivered share under 100 % and longer latencies. Combined: deliveries/s summed,
# delivered % = deliveries/s / (SUBS × published/s), p50/p99 the worst node's; "missing on A"
# = deliveries of messages published in A's window that A's subscribers had not received
# when wsload's drain ended; errors = wsload errors + duplicates + out-of-order, all nodes.
#
# CPU: each node's CPU over its wsload window from /proc/PID/stat (wsload --server-pid),
# divided by that node's deliveries: µs per delivery, which does not depend on how much of
# the two cores the process got. Redis: INFO's used_cpu_user+sys and the EVALSHA/EVAL calls
# (one per publish) sampled at 3 s and DURATION+1 s after the run starts (inside every
# setup's publishing period): its CPU % of one core and µs per publish.
#
# Nodes run with --threads 1; all on this machine, so the numbers compare the paths and the
# cost per delivery and per publish, not what N machines would give.
#
# Environment: DURATION (s, default 10), REPEAT (default 3; runs alternate setups and rates),
# SUBS (1000), RATES ("50 max"), SETUPS ("single cluster1 cluster3"), SWITCHBOARD_BIN,
# NO_BUILD=1, KEEP_RAW=1 (every run's figures on stderr, with each node's delivered %, p50, p99, CPU %).
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
RATES=${RATES:-"50 max"}
SETUPS=${SETUPS:-"single cluster1 cluster3"}
[ "$DURATION" -ge 4 ] || { echo "cluster.sh: DURATION must be at least 4 s" >&2; exit 64; }
[ "$SUBS" -ge 3 ] || { echo "cluster.sh: SUBS must be at least 3" >&2; exit 64; }
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { echo "cluster.sh: needs redis-server and redis-cli (scripts/setup.sh installs them)" >&2; exit 69; }

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
SUB_MSG='{"op":"sub","topic":"t"}'
PUB_MSG='{"op":"pub","topic":"t","data":"'"$PAYLOAD"'"}'

# load NAME N RATE WARMUP SECONDS PUB_MSG [WSLOAD ARGS…]: one wsload fan-out run against
# node NAME with N subscribers; its RESULT json on stdout.
load() {
    local port="PORT_$1" pid="PID_$1" n=$2 rate=$3 warmup=$4 seconds=$5 pub=$6 pace
    shift 6
    case $rate in
    max) pace=(-r 0 -d 16) ;;
    *) pace=(-r "$rate") ;;
    esac
    timeout $((seconds + warmup + 90)) "$WSLOAD" fanout --url "ws://127.0.0.1:${!port}/" -n "$n" -p 1 \
        --sub-msg "$SUB_MSG" --pub-msg "$pub" "${pace[@]}" --warmup "$warmup" -t "$seconds" \
        --server-pid "${!pid}" -q "$@" |
        sed -n 's/^RESULT //p'
}

# Redis's CPU seconds, publish-script calls and µs spent in them so far, as "cpu calls usec".
redis_sample() {
    redis-cli -p "$REDIS_PORT" INFO all | tr -d '\r' | awk -F'[:=,]' '
        /^used_cpu_(user|sys):/ { cpu += $2 }
        /^cmdstat_(evalsha|eval):/ { calls += $3; usec += $5 }
        END { printf "%.6f %d %d\n", cpu, calls, usec }'
}

# redis_window WAIT SECONDS: Redis's CPU % of one core, its CPU µs per publish and the µs
# inside the publish script per publish, between WAIT and WAIT+SECONDS s from now, as json.
redis_window() {
    local c0 n0 u0 c1 n1 u1
    sleep "$1"
    read -r c0 n0 u0 < <(redis_sample)
    sleep "$2"
    read -r c1 n1 u1 < <(redis_sample)
    jq -nc --argjson c "$(jq -n "$c1 - $c0")" --argjson n $((n1 - n0)) --argjson u $((u1 - u0)) --argjson s "$2" \
        '{redis_cpu_pct: ($c / $s * 100), redis_us_per_publish: (if $n > 0 then $c * 1e6 / $n else null end),
          redis_script_us: (if $n > 0 then $u / $n else null end)}'
}

# us_per_delivery: a node's CPU µs per delivery from one wsload RESULT.
US_PER_DELIVERY='(if .deliveries_per_s > 0 then .server_cpu_pct * 1e4 / .deliveries_per_s else null end)'

# run SETUP RATE: the run's combined figures as one json line.
run() {
    local setup=$1 rate=$2 load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    case $setup in
    single)
        load single "$SUBS" "$rate" 1 "$DURATION" "$PUB_MSG" >"$WORK/r.A"
        echo '{}' >"$WORK/redis"
        ;;
    cluster1)
        redis_window 3 $((DURATION - 2)) >"$WORK/redis" &
        local sampler=$!
        load A "$SUBS" "$rate" 1 "$DURATION" "$PUB_MSG" >"$WORK/r.A"
        wait "$sampler"
        ;;
    cluster3)
        local third=$((SUBS / 3)) idle='{"op":"pub","topic":"idle","data":"{ts}"}' b c sampler
        redis_window 3 $((DURATION - 2)) >"$WORK/redis" &
        sampler=$!
        load B "$third" 0.01 2 "$DURATION" "$idle" >"$WORK/r.B" &
        b=$!
        load C "$third" 0.01 2 "$DURATION" "$idle" >"$WORK/r.C" &
        c=$!
        load A $((SUBS - 2 * third)) "$rate" 1 $((DURATION + 2)) "$PUB_MSG" >"$WORK/r.A"
        wait "$b" "$c" "$sampler"
        ;;
    *) echo "unknown setup $setup" >&2; exit 1 ;;
    esac
    local files=("$WORK/r.A") f
    [ "$setup" = cluster3 ] && files+=("$WORK/r.B" "$WORK/r.C")
    for f in "${files[@]}"; do [ -s "$f" ] || { echo "no RESULT from $setup $rate (${f##*.})" >&2; exit 1; }; done
    # A's publisher counts what was published; the others' subscribers add their deliveries.
    jq -sc --argjson subs "$SUBS" --argjson load "$load1" --slurpfile redis "$WORK/redis" '
        (.[0]) as $a | {
        pub_per_s: $a.pub_per_s,
        deliveries_per_s: (map(.deliveries_per_s) | add),
        delivered_pct: ((map(.deliveries_per_s) | add) / ($subs * $a.pub_per_s) * 100),
        p50: (map(.lat_us.p50) | max), p99: (map(.lat_us.p99) | max),
        missing_on_A: $a.missing, expired: $a.expired,
        errors: (map(.errors + .duplicates + .out_of_order) | add),
        us_A: (.[0] | '"$US_PER_DELIVERY"'), us_B: (.[1] // null | if . then '"$US_PER_DELIVERY"' else null end),
        us_C: (.[2] // null | if . then '"$US_PER_DELIVERY"' else null end),
        cpu_A: $a.server_cpu_pct, load: $load,
        nodes: map({n: .conns, delivered_pct: (.deliveries_per_s / (.conns * $a.pub_per_s) * 100),
            p50: .lat_us.p50, p99: .lat_us.p99, cpu_pct: .server_cpu_pct})} + $redis[0]' "${files[@]}"
    rm -f "$WORK"/r.*
    sleep 1  # let the nodes drop the closed connections before the next run
}

IDLE=$(redis_window 0 4)
echo "load before: $(uptime)" >&2
declare -A RAW
for i in $(seq "$REPEAT"); do
    for rate in $RATES; do
        for setup in $SETUPS; do
            result=$(run "$setup" "$rate")
            [ "${KEEP_RAW:-0}" = 1 ] && echo "$i $rate $setup $result" >&2
            RAW[$rate.$setup]+="$result"$'\n'
        done
    done
done
echo "load after: $(uptime)" >&2

# med KEY DECIMALS: the median of .KEY over this cell's runs, or "–" when it has none.
med() {
    local v
    v=$(jq -s "map(.$1 | select(. != null)) | sort | if length == 0 then null else .[length/2|floor] end" <<<"$r")
    if [ "$v" = null ]; then echo "–"; else fmt "$v" "$2"; fi
}

echo
echo "Cluster fan-out: $SUBS subscribers of one topic, 1 publisher, 64-byte payloads, ${DURATION}s windows,"
echo "median of $REPEAT (each column its own median); nodes --threads 1, Redis appendfsync everysec."
echo "Latencies in µs (worst node); CPU µs per delivery per node; Redis CPU in % of one core."
echo
echo "Redis with the three nodes connected and nothing published: $(jq -r '.redis_cpu_pct * 100 | round / 100' <<<"$IDLE") % CPU."
echo
echo "| rate | setup | published/s | deliveries/s | delivered % | lat p50 | lat p99 | µs/deliv A | µs/deliv B | µs/deliv C | A CPU % | Redis CPU % | Redis µs/publish | in script µs | missing on A | errors | load 1 min |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for rate in $RATES; do
    for setup in $SETUPS; do
        r=${RAW[$rate.$setup]}
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$rate" "$setup" \
            "$(med pub_per_s 0)" "$(med deliveries_per_s 0)" "$(med delivered_pct 1)" "$(med p50 0)" "$(med p99 0)" \
            "$(med us_A 2)" "$(med us_B 2)" "$(med us_C 2)" "$(med cpu_A 0)" "$(med redis_cpu_pct 1)" \
            "$(med redis_us_per_publish 1)" "$(med redis_script_us 1)" "$(med missing_on_A 0)" "$(med errors 0)" "$(med load 1)"
    done
done
