#!/usr/bin/env bash
# Soak: 15 minutes of churn against a release `switchboard serve` with a replay log, then
# checks that the broker is alive, its RSS and descriptors are back to their baseline, every
# acked retained message replays, and every subscriber's stream was contiguous or had
# explicit gaps. Loopback only, every step bounded; not part of CI (it takes ~20 minutes).
#
#   Benchmarks/soak.sh                      # DURATION=900 s after a WARMUP=60 s
#   DURATION=120 WARMUP=20 CHURN=300 Benchmarks/soak.sh
#
# The workload, the checks and every knob (DURATION, WARMUP, CHURN, PUBLISHERS, rates,
# STALLED, GARBAGE_EVERY, REVOKE_EVERY, TOKENS, SEED, OUT, RSS_MARGIN, FD_MARGIN) are
# described at the top of Benchmarks/soak.py, the driver (Python `websockets`, which
# scripts/setup.sh installs). SERVE_BIN overrides the broker binary (default
# .build/release/switchboard, built if missing). Exit status: 0 every check passed,
# 1 a check failed, 2 the setup failed.
set -euo pipefail
cd "$(dirname "$0")/.."
serve_bin=${SERVE_BIN:-.build/release/switchboard}
[ -x "$serve_bin" ] || swift build -c release --product switchboard >&2
python3 -c 'import websockets' 2>/dev/null || { echo "soak: needs Python websockets (scripts/setup.sh)" >&2; exit 2; }
# Thousands of sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "soak: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
exec timeout $(( ${WARMUP:-60} + ${DURATION:-900} + 1500 )) python3 Benchmarks/soak.py "$serve_bin"
