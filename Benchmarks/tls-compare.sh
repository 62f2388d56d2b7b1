#!/usr/bin/env bash
# TLS against the ecosystem's choice: our TLS handler on the system OpenSSL against
# swift-nio-ssl (BoringSSL), each under the same WebSocket echo server (Benchmarks/TLSCompare:
# our NIO bootstrap, [TLS] [HTTP/1.1] [WebSocketServer.upgradeHandler], only [TLS] swapped).
#
#   Benchmarks/tls-compare.sh [--runs N] [--duration S] [--only h,a,b] [--client ours|nio-ssl] [--no-build]
#
# Scenarios (each run starts a fresh server per scenario; the two servers alternate first):
#   h  handshakes: 16 loops of connect (TCP, TLS, upgrade) + close    handshakes/s
#   a  echo 64 B binary, 64 connections, 16 in flight each            round trips/s
#   b  echo 64 KiB binary, 16 connections, 4 in flight each           MB/s each way
# Release build; the server runs on CPU 0 with one event-loop thread (`taskset -c 0`), the
# load generator (`tls-compare load`, one event-loop thread, our client on the system OpenSSL
# unless --client nio-ssl) on CPU 1. Each cell is the median of N runs (default 3), 1 s
# warm-up + S seconds measured (default 10). Besides the rates it gives the server's CPU time
# per operation (µs, from /proc over the measured window): what the server costs whatever
# share of CPU 0 it got, so it holds on a shared machine when the rates do not. "load CPU %"
# near 100 means the load generator, not the server, set the rate.
set -euo pipefail

RUNS=3
DURATION=10
ONLY="h,a,b"
CLIENT=ours
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS="$2"; shift 2 ;;
        --duration) DURATION="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --client) CLIENT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "tls-compare.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
case "$CLIENT" in ours|nio-ssl) ;; *) echo "tls-compare.sh: --client must be ours or nio-ssl, got $CLIENT" >&2; exit 64 ;; esac
case "$RUNS" in ''|*[!0-9]*|0) echo "tls-compare.sh: --runs must be a positive integer, got $RUNS" >&2; exit 64 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACKAGE="$ROOT/Benchmarks/TLSCompare"
PORT=${PORT:-19443}
if [ "$BUILD" = 1 ]; then
    (cd "$PACKAGE" && swift build -c release --product tls-compare >&2)
fi
BIN="$(cd "$PACKAGE" && swift build -c release --show-bin-path)/tls-compare"
[ -x "$BIN" ] || { echo "tls-compare.sh: $BIN not built" >&2; exit 1; }

WORK="$(mktemp -d)"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# One EC P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
    -out "$WORK/cert.pem" -subj /CN=localhost -days 2 -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null

start_server() {  # ours|nio-ssl
    taskset -c 0 "$BIN" serve --tls "$1" --certificate "$WORK/cert.pem" --key "$WORK/key.pem" \
        --port "$PORT" >"$WORK/server.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        grep -q '^listening on' "$WORK/server.out" 2>/dev/null && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "tls-compare.sh: the $1 server did not start: $(cat "$WORK/server.out")" >&2
    exit 1
}

# What each server negotiates with an offer like our client's (AES-128-GCM first, OpenSSL's
# default groups), and how many session tickets it hands out (BoringSSL sends its tickets
# with its first write, so the probe asks for a page: 404).
describe_server() {  # ours|nio-ssl
    start_server "$1"
    local out
    out=$(printf 'GET /probe HTTP/1.1\r\nHost: localhost\r\n\r\n' | timeout 5 openssl s_client -msg -ign_eof \
        -connect "127.0.0.1:$PORT" -alpn http/1.1 \
        -ciphersuites TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384 2>/dev/null || true)
    stop_server
    printf '%-8s %s; key exchange %s; signature %s; %s session tickets\n' "$1" \
        "$(sed -n 's/^New, *//p' <<<"$out" | head -1)" \
        "$(sed -n 's/^Server Temp Key: *//p' <<<"$out" | head -1)" \
        "$(sed -n 's/^Peer signature type: *//p' <<<"$out" | head -1)" \
        "$(grep -c '<<<.*NewSessionTicket' <<<"$out" || true)"
}

# run_one SERVER SCENARIO RUN: appends one JSON line to $WORK/results
run_one() {
    local server=$1 scenario=$2 run=$3 args
    case "$scenario" in
        h) args=(handshakes -c 16) ;;
        a) args=(echo -c 64 -s 64 -d 16) ;;
        b) args=(echo -c 16 -s 65536 -d 4) ;;
    esac
    start_server "$server"
    local result
    result=$(taskset -c 1 "$BIN" load "${args[@]}" -t "$DURATION" --warmup 1 --client "$CLIENT" \
        --url "wss://127.0.0.1:$PORT/" --server-pid "$SERVER_PID" 2>"$WORK/load.err" | sed -n 's/^RESULT //p')
    stop_server
    if [ -z "$result" ]; then
        echo "tls-compare.sh: the load against $server ($scenario) gave no result: $(cat "$WORK/load.err")" >&2
        exit 1
    fi
    [ -s "$WORK/load.err" ] && sed "s/^/  $server $scenario run $run: /" "$WORK/load.err" >&2
    echo "{\"server\":\"$server\",\"scenario\":\"$scenario\",\"run\":$run,\"result\":$result}" >>"$WORK/results"
}

echo "load before: $(uptime)"
echo "client: $CLIENT; runs=$RUNS duration=${DURATION}s; $(openssl version)"
describe_server ours
describe_server nio-ssl
for run in $(seq 1 "$RUNS"); do
    for scenario in h a b; do
        case ",$ONLY," in *",$scenario,"*) ;; *) continue ;; esac
        # Alternate which server goes first so drift in machine load does not favour one.
        if [ $((run % 2)) = 1 ]; then order=(ours nio-ssl); else order=(nio-ssl ours); fi
        for server in "${order[@]}"; do run_one "$server" "$scenario" "$run"; done
    done
done
echo "load after: $(uptime)"

python3 - "$WORK/results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
names = {"h": "handshakes/s (16 loops)", "a": "echo 64 B, 64 conns x 16 (msg/s)", "b": "echo 64 KiB, 16 conns x 4 (MB/s)"}
def metric(scenario, r):
    return r["mb_per_s"] if scenario == "b" else r["rate"]
def cells(scenario, server):
    runs = [row["result"] for row in rows if row["scenario"] == scenario and row["server"] == server]
    value = statistics.median(metric(scenario, r) for r in runs)
    cpu_us = statistics.median(r["server_cpu_s"] / r["ops"] * 1e6 for r in runs)
    cpu_pct = statistics.median(r["server_cpu_s"] / r["seconds"] * 100 for r in runs)
    load_pct = statistics.median(r["client_cpu_s"] / r["seconds"] * 100 for r in runs)
    errors = sum(int(r["errors"]) for r in runs)
    return value, cpu_us, cpu_pct, load_pct, errors, [metric(scenario, r) for r in runs]
print()
print("| scenario | ours | nio-ssl | ours/nio-ssl | server CPU µs/op ours | nio-ssl | ours/nio-ssl | server CPU % ours / nio-ssl | load CPU % ours / nio-ssl | errors |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for scenario in "hab":
    if not any(row["scenario"] == scenario for row in rows):
        continue
    o, n = cells(scenario, "ours"), cells(scenario, "nio-ssl")
    print(f"| {names[scenario]} | {o[0]:.1f} | {n[0]:.1f} | {o[0] / n[0]:.2f} | {o[1]:.1f} | {n[1]:.1f} | {o[1] / n[1]:.2f} "
          f"| {o[2]:.0f} / {n[2]:.0f} | {o[3]:.0f} / {n[3]:.0f} | {o[4]} / {n[4]} |")
print()
print("Medians of the runs. Rates: higher is better; CPU µs/op: lower is better (ours/nio-ssl < 1: ours is cheaper).")
for scenario in "hab":
    if any(row["scenario"] == scenario for row in rows):
        o, n = cells(scenario, "ours"), cells(scenario, "nio-ssl")
        print(f"runs {scenario}: ours " + " ".join(f"{v:.1f}" for v in o[5]) + " | nio-ssl " + " ".join(f"{v:.1f}" for v in n[5]))
PY
