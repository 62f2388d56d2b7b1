#!/usr/bin/env bash
# kill -9 during a publish burst, then check: every acked message is stored, stored seqs are
# contiguous, sequences continue after the last stored one; three rounds on the same file.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-.build/release/ReplayBenchmarks}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for round in 1 2 3; do
  "$bin" crash-writer "$dir/replay.db" > "$dir/acked.txt" &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  last=$(sort -n "$dir/acked.txt" | tail -1)
  echo "round $round: killed after acking up to ${last:-0}"
  "$bin" verify "$dir/replay.db" "${last:-0}"
done
