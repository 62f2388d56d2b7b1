#!/usr/bin/env bash
# Scale curves: how the cost of `switchboard serve` grows with the work, next to Node `ws`
# (ws-pubsub.js / ws-echo.js) measured in the same run, drawn into docs/performance.md and
# docs/images/curve-*.png.
#
#   Benchmarks/curves.sh            # full run (~15 min on 2 cores)
#   QUICK=1 Benchmarks/curves.sh    # fewer points, 2 s windows (~4 min)
#
# Curves (one fresh server per point and server; servers on CPU 0, switchboard with
# --threads 1; wsload on CPU 1):
#   subs    subscribers on one topic: at max rate (-r 0 -d 16) and paced at 50,000 deliveries/s
#   topics  live topics with 10 subscribers each (Benchmarks/subscribe-many.py builds them on
#           10 connections); wsload measures one more topic with 10 subscribers, max and paced
#   idle    idle connections: bytes of server RSS per connection (wsload connect)
#   size    message size: broker fan-out to 100 subscribers (max rate, depth 4) up to 64 KiB,
#           the most a command-line argument holds (wsload takes its template from argv);
#           library echo (echo-server vs ws-echo.js, 16 connections, depth 4) up to 1 MiB
# With PROFILE=1 (default) switchboard is also profiled (`perf record -e cpu-clock -g`) at
# each curve's PROFILE_<CURVE> point; the top symbols go into the document.
#
# Environment: QUICK=1, DURATION (s per run), CURVES ("subs topics idle size"), SUBS_POINTS,
# TOPIC_POINTS, IDLE_POINTS, FANOUT_SIZES, ECHO_SIZES, PROFILE (1), PROFILE_SUBS,
# PROFILE_TOPICS, PROFILE_SIZE, NO_BUILD=1, DOC (docs/performance.md), REDRAW=1 (rewrite DOC
# and the plots from the last run's results, kept in .build/curves-last, without measuring). The generated part of
# DOC lies between its `curves:begin` and `curves:end` markers; the text around it is kept.
# Every run is bounded (wsload's own limits plus `timeout`); servers are killed on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/run-helpers.sh
. "$ROOT/Benchmarks/run-helpers.sh"
# shellcheck source=Benchmarks/load-tools.sh
. "$ROOT/Benchmarks/load-tools.sh"
BUILD=1; [ "${NO_BUILD:-0}" = 1 ] || [ "${REDRAW:-0}" = 1 ] && BUILD=0
require_wsload "$ROOT" "$BUILD"
WS_PUBSUB=$(require_peer "$ROOT" ws-pubsub.js)
WS_ECHO=$(require_peer "$ROOT" ws-echo.js)
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs}

if [ "${QUICK:-0}" = 1 ]; then
    DURATION=${DURATION:-2}
    SUBS_POINTS=${SUBS_POINTS:-"10 1000 10000"}
    TOPIC_POINTS=${TOPIC_POINTS:-"1 1000 100000"}
    IDLE_POINTS=${IDLE_POINTS:-"1000 10000"}
    FANOUT_SIZES=${FANOUT_SIZES:-"32 4096 65536"}
    ECHO_SIZES=${ECHO_SIZES:-"32 65536 1048576"}
else
    DURATION=${DURATION:-5}
    # 19,000, not 20,000: the descriptor hard limit here is 20,000 per process (see the doc).
    SUBS_POINTS=${SUBS_POINTS:-"10 100 1000 5000 19000"}
    TOPIC_POINTS=${TOPIC_POINTS:-"1 100 1000 10000 100000"}
    IDLE_POINTS=${IDLE_POINTS:-"1000 5000 10000 19000"}
    FANOUT_SIZES=${FANOUT_SIZES:-"32 256 4096 16384 65536"}
    ECHO_SIZES=${ECHO_SIZES:-"32 1024 16384 262144 1048576"}
fi
CURVES=${CURVES:-"subs topics idle size"}
PROFILE=${PROFILE:-1}
PROFILE_SUBS=${PROFILE_SUBS:-$(awk '{print $NF}' <<<"$SUBS_POINTS")}
PROFILE_TOPICS=${PROFILE_TOPICS:-$(awk '{print $NF}' <<<"$TOPIC_POINTS")}
PROFILE_SIZE=${PROFILE_SIZE:-$(awk '{print $NF}' <<<"$FANOUT_SIZES")}
PACED_DELIVERIES=50000
DOC=${DOC:-$ROOT/docs/performance.md}
IMAGES=$ROOT/docs/images

cd "$ROOT"
if [ "$BUILD" = 1 ]; then
    swift build -c release --product switchboard >&2
    swift build -c release --product echo-server >&2
fi
BIN_DIR=$(swift build -c release --show-bin-path)
for product in switchboard echo-server; do
    [ -x "$BIN_DIR/$product" ] || { echo "curves.sh: $BIN_DIR/$product not built" >&2; exit 1; }
done

if ! command -v gnuplot >/dev/null; then
    apt-get install -y gnuplot-nox >&2 || { apt-get update >&2 && apt-get install -y gnuplot-nox >&2; }
fi
# Raise the soft descriptor limit to the hard one: both the server and wsload hold one per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

make_work_dir curves

SPID= SPORT=
# start_server ours|ws|ours-echo|ws-echo [extra switchboard flags]: sets SPID and SPORT.
start_server() {
    local kind=$1 log
    shift
    SPORT=$(free_port)
    log=$WORK/$kind-$SPORT.log
    case $kind in
    ours)
        rm -f "$WORK"/broker.db*
        # All load comes from 127.0.0.1: no per-address connection or handshake-rate limit.
        env SWITCHBOARD_MAX_CONNECTIONS_PER_IP=0 SWITCHBOARD_HANDSHAKE_RATE=0 "${OURS_ENV[@]}" taskset -c 0 "$BIN_DIR/switchboard" serve --host 127.0.0.1 --port "$SPORT" \
            --anonymous-subscribe '>' --anonymous-publish '>' --database "$WORK/broker.db" --threads 1 \
            --log-level warning --request-rate 0 "$@" >"$log" 2>&1 & ;;
    ws) taskset -c 0 node "$WS_PUBSUB" --port "$SPORT" >"$log" 2>&1 & ;;
    ours-echo) taskset -c 0 "$BIN_DIR/echo-server" --port "$SPORT" --threads 1 >"$log" 2>&1 & ;;
    ws-echo) taskset -c 0 node "$WS_ECHO" --port "$SPORT" >"$log" 2>&1 & ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    if [ "$kind" = ours-echo ]; then wait_for_port "$SPORT"; else wait_for "$log" "listening"; fi
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
}

# record CURVE POINT SERVER MODE RESULT_JSON: appends one result line.
record() {
    [ -n "$5" ] || { echo "curves.sh: no RESULT for $1 $2 $3 $4" >&2; exit 1; }
    jq -c --arg c "$1" --argjson p "$2" --arg s "$3" --arg m "$4" '{curve: $c, point: $p, server: $s, mode: $m, r: .}' \
        <<<"$5" >>"$WORK/results.jsonl"
    echo "$1 $2 $3 $4: $(jq -c '{deliveries_per_s, msgs_per_s, mb_per_s, p99: (.lat_us // {}).p99, server_cpu_pct, rss_per_conn_bytes, missing, errors}' <<<"$5")" >&2
}

# profile_during CURVE CONNS: once the running switchboard holds CONNS descriptors (the load's
# connections are open; 120 s at most), after wsload's settle and warm-up, perf-records it for
# DURATION - 1 s of the measured window.
profile_during() {
    (for _ in $(seq 1200); do
        [ "$(ls "/proc/$SPID/fd" 2>/dev/null | wc -l)" -ge "$2" ] && break
        sleep 0.1
    done
    sleep 2
    perf record -e cpu-clock -g -p "$SPID" -o "$WORK/perf-$1.data" -- sleep $((DURATION > 2 ? DURATION - 1 : 1)) \
        >"$WORK/perf-$1.log" 2>&1) &
    PIDS+=("$!")
}

data_of_size() {  # a JSON string of N bytes (quotes included) holding wsload's 20-byte {ts} marker
    printf '"{ts}%s"' "$(head -c $(($1 - 22)) /dev/zero | tr '\0' x)"
}

# fanout SUBS MODE [SIZE [DEPTH]]: one wsload fanout run on topic t; prints its RESULT json.
fanout() {
    local subs=$1 mode=$2 size=${3:-64} depth=${4:-16} pace
    case $mode in
    max) pace=(-r 0 -d "$depth") ;;
    paced) pace=(-r "$(jq -n "$PACED_DELIVERIES / $subs")") ;;
    esac
    taskset -c 1 timeout $((DURATION + 120)) "$WSLOAD" fanout --url "ws://127.0.0.1:$SPORT/" -n "$subs" -p 1 \
        --sub-msg '{"op":"sub","topic":"t"}' --pub-msg '{"op":"pub","topic":"t","data":'"$(data_of_size "$size")"'}' \
        "${pace[@]}" -t "$DURATION" --server-pid "$SPID" -q | sed -n 's/^RESULT //p'
}

OURS_ENV=()
run_subs() {
    local n server mode
    for n in $SUBS_POINTS; do
        [ "$NOFILE" -ge $((n + 50)) ] || { echo "curves.sh: ulimit -n $NOFILE is too low for $n subscribers; skipped" >&2; continue; }
        for server in ours ws; do
            start_server "$server"
            for mode in max paced; do
                [ "$PROFILE" = 1 ] && [ "$server" = ours ] && [ "$mode" = max ] && [ "$n" = "$PROFILE_SUBS" ] &&
                    profile_during subs "$n"
                record subs "$n" "$server" "$mode" "$(fanout "$n" "$mode")"
            done
            stop_server
        done
    done
}

run_topics() {
    local n server mode bg
    for n in $TOPIC_POINTS; do
        for server in ours ws; do
            OURS_ENV=("SWITCHBOARD_MAX_SUBSCRIPTIONS=$((n + 10))" "SWITCHBOARD_MAX_TOPICS=$((n + 100))")
            start_server "$server"
            OURS_ENV=()
            # n topics in all: the measured topic t and n - 1 in the background.
            if [ "$n" -gt 1 ]; then
                timeout 300 python3 "$ROOT/Benchmarks/subscribe-many.py" "$SPORT" $((n - 1)) --conns 10 --hold 300 \
                    >"$WORK/bg.log" 2>&1 &
                bg=$!
                PIDS+=("$bg")
                wait_for "$WORK/bg.log" "ready" 280
            fi
            for mode in max paced; do
                [ "$PROFILE" = 1 ] && [ "$server" = ours ] && [ "$mode" = max ] && [ "$n" = "$PROFILE_TOPICS" ] &&
                    profile_during topics 20
                local result
                result=$(fanout 10 "$mode")
                record topics "$n" "$server" "$mode" "$(jq -c --argjson rss "$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")" \
                    '. + {server_rss_now_kb: $rss}' <<<"$result")"
            done
            [ "$n" -gt 1 ] && { kill "$bg" 2>/dev/null || true; wait "$bg" 2>/dev/null || true; }
            stop_server
        done
    done
}

run_idle() {
    local n server
    for n in $IDLE_POINTS; do
        [ "$NOFILE" -ge $((n + 50)) ] || { echo "curves.sh: ulimit -n $NOFILE is too low for $n connections; skipped" >&2; continue; }
        for server in ours ws; do
            start_server "$server"
            record idle "$n" "$server" connect "$(taskset -c 1 timeout 180 "$WSLOAD" connect --url "ws://127.0.0.1:$SPORT/" \
                -n "$n" --hold 3 --server-pid "$SPID" -q | sed -n 's/^RESULT //p')"
            stop_server
        done
    done
}

run_size() {
    local size server
    for size in $FANOUT_SIZES; do
        for server in ours ws; do
            # Four 64 KiB messages in flight exceed no subscriber's default 4 MiB backlog; the
            # limit is raised anyway so that the curve shows speed, not the slow-consumer policy.
            start_server "$server" --max-queued-bytes 16777216
            [ "$PROFILE" = 1 ] && [ "$server" = ours ] && [ "$size" = "$PROFILE_SIZE" ] && profile_during size 100
            record size-fanout "$size" "$server" max "$(fanout 100 max "$size" 4)"
            stop_server
        done
    done
    for size in $ECHO_SIZES; do
        for server in ours ws; do
            start_server "$server-echo"
            record size-echo "$size" "$server" echo "$(taskset -c 1 timeout $((DURATION + 60)) "$WSLOAD" echo \
                --url "ws://127.0.0.1:$SPORT/" -c 16 -s "$size" -d 4 -t "$DURATION" --binary --server-pid "$SPID" -q |
                sed -n 's/^RESULT //p')"
            stop_server
        done
    done
}

# The last run's raw results, kept so that REDRAW=1 can rewrite the document without measuring.
LAST=$ROOT/.build/curves-last
if [ "${REDRAW:-0}" = 1 ]; then
    cp "$LAST/results.jsonl" "$LAST/profiles.md" "$WORK/"
    # shellcheck source=/dev/null
    . "$LAST/meta"
else
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    MEASURED=$(date -u '+%Y-%m-%d %H:%M UTC')
    STARTED=$(date +%s)
    : >"$WORK/results.jsonl"
    for curve in $CURVES; do
        case $curve in
        subs) run_subs ;;
        topics) run_topics ;;
        idle) run_idle ;;
        size) run_size ;;
        *) echo "curves.sh: unknown curve $curve" >&2; exit 64 ;;
        esac
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    ELAPSED=$(($(date +%s) - STARTED))

    # The profiles: where the time goes, by binary and by symbol (Swift names demangled).
    PROFILES=$WORK/profiles.md
    : >"$PROFILES"
    for data in "$WORK"/perf-*.data; do
        [ -f "$data" ] || continue
        curve=$(basename "$data" .data); curve=${curve#perf-}
        {
            echo "**$curve** (switchboard at the profiled point; % of its samples):"
            echo
            echo '```'
            perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | awk 'NR <= 6' |
                sed 's/ *$//'
            echo
            perf report -i "$data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | awk 'NR <= 15' |
                swift demangle --simplified --compact | sed 's/[ -]*$//' | cut -c1-150
            echo '```'
            echo
        } >>"$PROFILES"
    done
    mkdir -p "$LAST"
    cp "$WORK/results.jsonl" "$PROFILES" "$LAST/"
    declare -p MEASURED LOAD_BEFORE LOAD_AFTER ELAPSED DURATION NOFILE PROFILE_SUBS PROFILE_TOPICS PROFILE_SIZE >"$LAST/meta"
fi

mkdir -p "$IMAGES"
MEASURED=$MEASURED LOAD_BEFORE=$LOAD_BEFORE LOAD_AFTER=$LOAD_AFTER ELAPSED=$ELAPSED DURATION=$DURATION NOFILE=$NOFILE QUICK=${QUICK:-0} \
PACED=$PACED_DELIVERIES PROFILE_POINTS="subscribers $PROFILE_SUBS, topics $PROFILE_TOPICS, fan-out size $PROFILE_SIZE B" \
    python3 - "$WORK" "$DOC" "$IMAGES" <<'EOF'
import json, os, subprocess, sys
work, doc, images = sys.argv[1:]
env = os.environ
PACED = int(env["PACED"])
rows = [json.loads(l) for l in open(os.path.join(work, "results.jsonl"))]
def get(curve, point, server, mode):
    for r in rows:
        if (r["curve"], r["point"], r["server"], r["mode"]) == (curve, point, server, mode):
            return r["r"]
def points(curve):
    return sorted({r["point"] for r in rows if r["curve"] == curve})
def cpu_us(r, per):  # server CPU µs per unit of work (per = units/s)
    return r["server_cpu_pct"] * 1e4 / per if per else float("nan")
def ratio(a, b):
    return "%.2f×" % (a / b) if a and b else "–"
def num(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"

out = []
def table(title, head, body):
    out.append(f"### {title}\n")
    out.append("| " + " | ".join(head) + " |")
    out.append("| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |")
    out.extend("| " + " | ".join(row) + " |" for row in body)
    out.append("")

def plot(name, title, xlabel, panels, logx=True):
    """panels: [(ylabel, logy, {series: [(x, y)]})]; one PNG with the panels side by side."""
    script = [f'set terminal pngcairo size {460 * len(panels)},360 font "sans,9"',
              f'set output "{images}/{name}.png"', f'set multiplot layout 1,{len(panels)} title "{title}"',
              "set key top left", "set grid", "set xlabel '%s'" % xlabel]
    if logx:
        script.append("set logscale x")
    for ylabel, logy, series in panels:
        script.append("set ylabel '%s'" % ylabel)
        # A linear axis starts at 0, so that a flat curve looks flat.
        script.append("set logscale y; set autoscale y" if logy else "unset logscale y; set yrange [0:*]")
        script.append("plot " + ", ".join(f"'-' with linespoints lw 2 pt 7 title '{s}'" for s in series))
        for pts in series.values():
            script.extend(f"{x} {y}" for x, y in pts if y is not None)
            script.append("e")
    script.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(script), text=True, check=True)
    out.append(f"![{title}](images/{name}.png)\n")

def fanout_curve(curve, column, heading, name, title, with_rss):
    """A fan-out curve (max and paced runs per point): its table and its plot."""
    if not points(curve):
        return
    body, series = [], {k: {"ours": [], "ws": []} for k in ("d", "p99", "cpu", "rss")}
    for n in points(curve):
        o, w = get(curve, n, "ours", "max"), get(curve, n, "ws", "max")
        op, wp = get(curve, n, "ours", "paced"), get(curve, n, "ws", "paced")
        for s, m, p in (("ours", o, op), ("ws", w, wp)):
            series["d"][s].append((n, m["deliveries_per_s"]))
            series["p99"][s].append((n, p["lat_us"]["p99"] / 1000))
            series["cpu"][s].append((n, cpu_us(p, p["deliveries_per_s"])))
            series["rss"][s].append((n, p.get("server_rss_now_kb", 0) / 1024))
        row = [f"{n:,}", num(o["deliveries_per_s"]), num(w["deliveries_per_s"]), ratio(o["deliveries_per_s"], w["deliveries_per_s"]),
               num(cpu_us(o, o["deliveries_per_s"]), 2), num(cpu_us(w, w["deliveries_per_s"]), 2),
               num(op["lat_us"]["p99"] / 1000, 2), num(wp["lat_us"]["p99"] / 1000, 2), ratio(op["lat_us"]["p99"], wp["lat_us"]["p99"]),
               num(cpu_us(op, op["deliveries_per_s"]), 2), num(cpu_us(wp, wp["deliveries_per_s"]), 2),
               ratio(cpu_us(op, op["deliveries_per_s"]), cpu_us(wp, wp["deliveries_per_s"])), f'{o["missing"]}/{w["missing"]}']
        if with_rss:
            row += [num(op["server_rss_now_kb"] / 1024, 1), num(wp["server_rss_now_kb"] / 1024, 1),
                    ratio(op["server_rss_now_kb"], wp["server_rss_now_kb"])]
        body.append(row)
    table(heading, [column, "max deliveries/s ours", "ws", "ratio", "max CPU µs/delivery ours", "ws",
                    "paced p99 ms ours", "ws", "ratio", "paced CPU µs/delivery ours", "ws", "ratio", "missing (max) ours/ws"]
          + (["server RSS MB ours", "ws", "ratio"] if with_rss else []), body)
    third = ("server RSS MB", True, series["rss"]) if with_rss else ("server CPU µs per delivery (paced)", True, series["cpu"])
    plot(name, title, column, [("deliveries/s at max rate", True, series["d"]),
                               (f"p99 ms at {PACED:,} deliveries/s", True, series["p99"]), third])

fanout_curve("subs", "subscribers", "Subscribers per topic", "curve-subscribers", "Subscribers per topic (1 publisher)", False)
fanout_curve("topics", "topics", "Topics (10 subscribers each)", "curve-topics",
             "Topics, 10 subscribers each (load on one of them)", True)

# Idle connections.
if points("idle"):
    body, series = [], {k: {"ours": [], "ws": []} for k in ("per", "rss")}
    for n in points("idle"):
        o, w = get("idle", n, "ours", "connect"), get("idle", n, "ws", "connect")
        for s, m in (("ours", o), ("ws", w)):
            series["per"][s].append((n, m["rss_per_conn_bytes"]))
            series["rss"][s].append((n, m["server_rss_kb"] / 1024))
        body.append([f"{n:,}", num(o["rss_per_conn_bytes"]), num(w["rss_per_conn_bytes"]), ratio(o["rss_per_conn_bytes"], w["rss_per_conn_bytes"]),
                     num(o["server_rss_kb"] / 1024, 1), num(w["server_rss_kb"] / 1024, 1), f'{o["opened"]}/{w["opened"]}'])
    table("Idle connections", ["connections", "RSS bytes/conn ours", "ws", "ratio", "server RSS MB ours", "ws", "opened ours/ws"], body)
    plot("curve-idle", "Idle connections", "connections",
         [("server RSS bytes per connection", False, series["per"]), ("server RSS MB", True, series["rss"])])

# Message size.
if points("size-fanout") or points("size-echo"):
    body, series = [], {k: {"ours": [], "ws": []} for k in ("fmb", "fcpu", "emb")}
    for n in points("size-fanout"):
        o, w = get("size-fanout", n, "ours", "max"), get("size-fanout", n, "ws", "max")
        for s, m in (("ours", o), ("ws", w)):
            series["fmb"][s].append((n, m["deliveries_per_s"] * n / 1e6))
            series["fcpu"][s].append((n, cpu_us(m, m["deliveries_per_s"])))
        body.append([f"{n:,}", num(o["deliveries_per_s"]), num(w["deliveries_per_s"]), ratio(o["deliveries_per_s"], w["deliveries_per_s"]),
                     num(o["deliveries_per_s"] * n / 1e6), num(w["deliveries_per_s"] * n / 1e6),
                     num(cpu_us(o, o["deliveries_per_s"]), 2), num(cpu_us(w, w["deliveries_per_s"]), 2),
                     num(o["lat_us"]["p99"] / 1000, 1), num(w["lat_us"]["p99"] / 1000, 1)])
    if body:
        table("Message size: broker fan-out to 100 subscribers (max rate, depth 4)",
              ["data bytes", "deliveries/s ours", "ws", "ratio", "MB/s delivered ours", "ws", "CPU µs/delivery ours", "ws",
               "p99 ms ours", "ws"], body)
    body = []
    for n in points("size-echo"):
        o, w = get("size-echo", n, "ours", "echo"), get("size-echo", n, "ws", "echo")
        for s, m in (("ours", o), ("ws", w)):
            series["emb"][s].append((n, m["mb_per_s"]))
        body.append([f"{n:,}", num(o["msgs_per_s"]), num(w["msgs_per_s"]), ratio(o["msgs_per_s"], w["msgs_per_s"]),
                     num(o["mb_per_s"]), num(w["mb_per_s"]), num(o["lat_us"]["p99"] / 1000, 2), num(w["lat_us"]["p99"] / 1000, 2),
                     num(cpu_us(o, o["msgs_per_s"]), 2), num(cpu_us(w, w["msgs_per_s"]), 2)])
    if body:
        table("Message size: library echo (16 connections, depth 4, binary)",
              ["message bytes", "round trips/s ours", "ws", "ratio", "MB/s each way ours", "ws", "RTT p99 ms ours", "ws",
               "CPU µs/round trip ours", "ws"], body)
    plot("curve-message-size", "Message size", "bytes per message",
         [("fan-out MB/s delivered (100 subscribers)", True, series["fmb"]), ("fan-out server CPU µs per delivery", True, series["fcpu"]),
          ("echo MB/s each way (16 connections)", True, series["emb"])])

cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
kernel = os.uname().release
head = [f"Measured {env['MEASURED']}"
        f" on {cpu or 'unknown CPU'}, {os.cpu_count()} cores, Linux {kernel}; load average (1/5/15 min) "
        f"before {env['LOAD_BEFORE']}, after {env['LOAD_AFTER']}; {env['DURATION']} s windows, one run per cell, "
        f"{env['ELAPSED']} s in all{' (QUICK=1)' if env['QUICK'] == '1' else ''}. Descriptor limit {env['NOFILE']}.", ""]
profiles = open(os.path.join(work, "profiles.md")).read()
if profiles:
    head_p = ["### Profiles", "", "`perf record -e cpu-clock -g` on switchboard (release) for the measured window at "
              f"these points: {env['PROFILE_POINTS']}.", ""]
    out.extend(head_p + [profiles])
generated = "\n".join(head + out).rstrip() + "\n"
begin, end = "<!-- curves:begin (written by Benchmarks/curves.sh) -->", "<!-- curves:end -->"
text = open(doc).read() if os.path.exists(doc) else f"# Performance\n\n{begin}\n{end}\n"
if begin not in text or end not in text:
    sys.exit(f"curves.sh: {doc} lacks the markers {begin} / {end}")
before, rest = text.split(begin, 1)
after = rest.split(end, 1)[1]
open(doc, "w").write(before + begin + "\n" + generated + end + after)
EOF
echo "curves.sh: wrote $DOC and $IMAGES/curve-*.png in ${ELAPSED}s (load before $LOAD_BEFORE, after $LOAD_AFTER)" >&2
