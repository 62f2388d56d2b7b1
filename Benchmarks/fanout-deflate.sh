#!/usr/bin/env bash
# Compressed fan-out: 1 KiB JSON messages to SUBS (1000) subscribers that all negotiated
# permessage-deflate, against the same load uncompressed, with Benchmarks/fanout.sh.
#
#   Benchmarks/fanout-deflate.sh    # build (release), then both runs
#
# 1. PAYLOAD=json1k, switchboard only, no compression: the baseline for server CPU per delivery.
# 2. PAYLOAD=json1k DEFLATE=1, switchboard (`--deflate on`: threshold 1024, each message
#    compressed once for every subscriber) and Node `ws` (`--deflate`: compressed per
#    connection) alternating in the same run, every wsload connection offering deflate.
# Targets: CPU µs per delivery of run 2 within 1.3× of run 1; deliveries/s of run 2 at
# least 10× ws's. Environment as fanout.sh (DURATION, REPEAT, SUBS, SCENARIOS, NO_BUILD, …).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PAYLOAD=json1k
echo "== uncompressed (switchboard) =="
SERVERS=ours "$ROOT/Benchmarks/fanout.sh"
echo
echo "== permessage-deflate (switchboard and ws) =="
NO_BUILD=1 DEFLATE=1 "$ROOT/Benchmarks/fanout.sh"
