#!/usr/bin/env bash
# Fuzz smoke test for CI: builds the fuzz package (Fuzz/, release, libFuzzer + AddressSanitizer)
# and runs every fuzzer for a bounded time on a copy of its seed corpus (Fuzz/Corpus/<name>/),
# so a regression that any seed or a short run reaches fails the build. Exits non-zero when a
# fuzzer finds a crash, a broken invariant, a leak or a timeout; the input is kept under
# Fuzz/.build/fuzz-smoke/artifacts/.
#
#   scripts/fuzz-smoke.sh                  # every fuzzer, 30 s each
#   FUZZ_SECONDS=5 scripts/fuzz-smoke.sh TopicFuzzer WireRequestFuzzer
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"

seconds="${FUZZ_SECONDS:-30}"
# Swift's own crash reporter would take over libFuzzer's crash handling (and can hang
# under ASan): libFuzzer reports the failing input itself.
export SWIFT_BACKTRACE=enable=no
work=.build/fuzz-smoke
artifacts="$work/artifacts"

# Every directory of Sources/ with a main.swift is a fuzzer (FuzzerSupport is a library).
fuzzers=("$@")
if [ ${#fuzzers[@]} -eq 0 ]; then
  for main in Sources/*/main.swift; do
    fuzzers+=("$(basename "$(dirname "$main")")")
  done
fi

dictionary() {
  case "$1" in
    HandshakeFuzzer | UpgradeFuzzer | ClientResponseFuzzer) echo handshake.dict ;;
    WireRequestFuzzer) echo wire.dict ;;
    ConfigFuzzer) echo config.dict ;;
  esac
}

start=$(date +%s)
swift build -c release -Xswiftc -sanitize=fuzzer,address 2>&1 | tail -n 3
echo "fuzz-smoke: built in $(($(date +%s) - start)) s"

rm -rf "$work"
mkdir -p "$artifacts"
failed=()
for name in "${fuzzers[@]}"; do
  corpus="$work/corpus/$name"
  mkdir -p "$corpus"
  cp Corpus/"$name"/* "$corpus"/
  # TLSRecordFuzzer runs a real handshake per input: short scripts keep it at hundreds a second.
  max_len=4096; [ "$name" = TLSRecordFuzzer ] && max_len=512
  options=(-max_total_time="$seconds" -max_len="$max_len" -timeout=10 -print_final_stats=1
    -artifact_prefix="$artifacts/$name-")
  dict=$(dictionary "$name")
  [ -n "$dict" ] && options+=(-dict="$dict")
  log="$work/$name.log"
  if ./.build/release/"$name" "$corpus" "${options[@]}" >"$log" 2>&1; then
    # The last status line: inputs run, edges (cov) and features (ft) reached.
    echo "fuzz-smoke: $name ok: $(grep -E '^#[0-9]+' "$log" | tail -n 1)"
  else
    echo "fuzz-smoke: $name FAILED (log $PWD/$log):"
    grep -E 'ERROR|Fatal error|precondition|Test unit written' "$log" | head -n 5 || tail -n 20 "$log"
    failed+=("$name")
  fi
done

echo "fuzz-smoke: ${#fuzzers[@]} fuzzers in $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: findings in ${failed[*]}; reproduce with Fuzz/.build/release/<name> <artifact>" >&2
  exit 1
fi
