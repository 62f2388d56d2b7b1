#!/usr/bin/env bash
# kill -9 during a publish burst, then check: every acked message is stored, stored seqs are
# contiguous, sequences continue after the last stored one; three rounds on the same file.
#
#   Benchmarks/replay-crash.sh [storage|serve|all]     (default: all)
#
# storage  the storage layer alone: `ReplayBenchmarks crash-writer` appends to a ReplayLog
#          and prints each acked seq; killed after a random 0.1–0.9 s; `verify` reads the file.
# serve    the real `switchboard serve` (retaining crash.>), a Python `websockets` client
#          publishing pipelined with ids, killed -9 after a random number of acks with
#          publishes in flight, restarted on the same file and checked by a resume with
#          `since: 0` (Benchmarks/replay-crash-serve.py; scripts/setup.sh installs websockets).
#
# Environment: ROUNDS (3), BIN (ReplayBenchmarks binary), SERVE_BIN (switchboard binary);
# both default to .build/release and are built there if missing. Every step is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
rounds=${ROUNDS:-3}
case "$mode" in storage|serve|all) ;; *) echo "usage: $0 [storage|serve|all]" >&2; exit 64 ;; esac

binary() {  # binary PRODUCT OVERRIDE: the release binary, built if missing
  local path=${2:-.build/release/$1}
  [ -x "$path" ] || swift build -c release --product "$1" >&2
  echo "$path"
}

if [ "$mode" != serve ]; then
  echo "== storage layer (ReplayBenchmarks crash-writer)"
  bin=$(binary ReplayBenchmarks "${BIN:-}")
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  for round in $(seq 1 "$rounds"); do
    "$bin" crash-writer "$dir/replay.db" > "$dir/acked.txt" &
    pid=$!
    sleep "0.$((RANDOM % 9 + 1))"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    last=$(sort -n "$dir/acked.txt" | tail -1)
    echo "round $round: killed after acking up to ${last:-0}"
    timeout 120 "$bin" verify "$dir/replay.db" "${last:-0}"
  done
fi

if [ "$mode" != storage ]; then
  echo "== switchboard serve (real process, Python client)"
  serve_bin=$(binary switchboard "${SERVE_BIN:-}")
  timeout 600 python3 Benchmarks/replay-crash-serve.py "$serve_bin" "$rounds"
fi
