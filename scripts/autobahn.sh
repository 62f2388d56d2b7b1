#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (the reference WebSocket conformance suite, PyPI
# `autobahntestsuite` 25.10.1) against Switchboard, in either role, and judges the result.
#
#   scripts/autobahn.sh setup                     install the suite (once; ~5 min)
#   scripts/autobahn.sh server [OPTIONS]          the suite's client against `echo-server --deflate`
#   scripts/autobahn.sh client [OPTIONS]          `autobahn-client` against the suite's server
#   scripts/autobahn.sh both [OPTIONS]            server, then client
#
# OPTIONS
#   --cases LIST     comma-separated case ids or patterns ("1.*,12.1.*"); default every case
#   --exclude LIST   cases to leave out, same form; default none
#   --ci             the cases CI runs: sections 1-10 whole (there is no 8), and of each
#                    subsection of 12 and 13 (permessage-deflate, 18 cases each) every third
#                    case from the first: 16 B, 1 KiB, 16 KiB, 128 KiB whole, 32 KiB in
#                    256-byte frames, 128 KiB in 1 KiB frames. A full run takes 2.5 times as long.
#   --no-build       use the release binaries already built
#
# Builds the example (`swift build -c release --product ...`), starts both sides on free
# loopback ports, runs every selected case and prints a table by section
# (scripts/autobahn-summary.py). Reports (HTML, JSON) go to .build/autobahn-reports/server
# and .build/autobahn-reports/client, or $AUTOBAHN_REPORTS.
#
# Exit status: 0 when every case is OK or INFORMATIONAL; 1 when one is NON-STRICT,
# UNIMPLEMENTED, FAILED or has no result, or the testee crashed or timed out; 64 on bad
# arguments; 69 when no Python 2.7 exists or the suite cannot be installed.
#
# The suite runs on Python 2.7 only: $PYTHON2, else pyenv's 2.7.x, else python2.7 on PATH.
# It is installed, with the versions pinned in scripts/autobahn-constraints.txt, into a
# virtualenv under $AUTOBAHN_HOME (default ~/.cache/switchboard/autobahn-testsuite-25.10.1);
# the installation needs PyPI and a C compiler (two of the packages are C extensions).
# Each role's run is bounded by $AUTOBAHN_TIMEOUT seconds (default 3600).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
suite_version="25.10.1"
AUTOBAHN_HOME="${AUTOBAHN_HOME:-$HOME/.cache/switchboard/autobahn-testsuite-$suite_version}"
AUTOBAHN_REPORTS="${AUTOBAHN_REPORTS:-$root/.build/autobahn-reports}"
AUTOBAHN_TIMEOUT="${AUTOBAHN_TIMEOUT:-3600}"
venv="$AUTOBAHN_HOME/venv"
agent="switchboard"

usage() { awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0" >&2; exit 64; }
say() { echo "autobahn.sh: $*" >&2; }

find_python2() {
  local candidate
  for candidate in "${PYTHON2:-}" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7 python2.7 /usr/bin/python2.7; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' >/dev/null 2>&1; then
      command -v "$candidate"
      return
    fi
  done
  say "no Python 2.7 found (the suite needs it): install one (e.g. 'pyenv install 2.7.18') or set PYTHON2=/path/to/python2.7"
  exit 69
}

installed() { [ -x "$venv/bin/wstest" ] && "$venv/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; }

# virtualenv comes from a private directory, so the Python 2.7 installation is left as it is.
setup() {
  installed && return 0
  local python2 bootstrap
  python2="$(find_python2)"
  bootstrap="$AUTOBAHN_HOME/bootstrap"
  say "installing autobahntestsuite $suite_version into $venv (Python 2.7: $python2)"
  rm -rf "$venv" "$bootstrap"
  mkdir -p "$AUTOBAHN_HOME"
  if ! "$python2" -m pip install --quiet --disable-pip-version-check --no-python-version-warning --target "$bootstrap" "virtualenv<20.22" ||
    ! PYTHONPATH="$bootstrap" "$python2" -m virtualenv --quiet "$venv" ||
    ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-python-version-warning \
      -c "$root/scripts/autobahn-constraints.txt" "autobahntestsuite==$suite_version" ||
    ! installed; then
    say "installing the suite failed (see pip's messages above)"
    exit 69
  fi
}

free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port pid: until something listens on the port, while pid lives (30 s at most)
  local i
  for i in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

json_list() { # "a,b" -> ["a", "b"]
  "$venv/bin/python" -c 'import json, sys; print(json.dumps([c for c in sys.argv[1].split(",") if c]))' "$1"
}

build() {
  [ "$build" = 1 ] || return 0
  say "building $1 (release)"
  (cd "$root" && swift build -c release --product "$1" >&2)
}

binary() { echo "$(cd "$root" && swift build -c release --show-bin-path)/$1"; }

# The background process of the role being run, stopped on exit.
background=""
stop_background() {
  if [ -n "$background" ] && kill -0 "$background" 2>/dev/null; then
    kill "$background" 2>/dev/null || true
    wait "$background" 2>/dev/null || true
  fi
  background=""
}
trap stop_background EXIT

# The suite's client runs every case against echo-server.
run_server_role() {
  build echo-server
  local out="$AUTOBAHN_REPORTS/server" port start status=0
  rm -rf "$out"; mkdir -p "$out"
  port="$(free_port)"
  "$(binary echo-server)" --port "$port" --deflate > "$out/echo-server.log" 2>&1 &
  background=$!
  wait_for_port "$port" "$background" || { say "echo-server did not start; see $out/echo-server.log"; return 1; }
  cat > "$out/spec.json" <<JSON
{"outdir": "$out", "servers": [{"agent": "$agent", "url": "ws://127.0.0.1:$port"}],
 "cases": $cases, "exclude-cases": $exclude, "exclude-agent-cases": {}}
JSON
  say "server role: the suite's client against echo-server --deflate on port $port"
  start=$(date +%s)
  (cd "$out" && timeout "$AUTOBAHN_TIMEOUT" "$venv/bin/wstest" -m fuzzingclient -s "$out/spec.json") \
    > "$out/wstest.log" 2>&1 || status=$?
  say "server role: $(( $(date +%s) - start )) s"
  [ "$status" = 0 ] || say "wstest exited with $status (124: timed out after $AUTOBAHN_TIMEOUT s); see $out/wstest.log"
  if ! kill -0 "$background" 2>/dev/null; then
    say "echo-server died during the run; see $out/echo-server.log"
    status=1
  fi
  stop_background
  summarize "$out" || status=1
  return "$status"
}

# autobahn-client runs every case against the suite's server.
run_client_role() {
  build autobahn-client
  local out="$AUTOBAHN_REPORTS/client" port start status=0
  rm -rf "$out"; mkdir -p "$out"
  port="$(free_port)"
  cat > "$out/spec.json" <<JSON
{"url": "ws://127.0.0.1:$port", "outdir": "$out",
 "cases": $cases, "exclude-cases": $exclude, "exclude-agent-cases": {}}
JSON
  (cd "$out" && exec "$venv/bin/wstest" -m fuzzingserver -s "$out/spec.json" --webport 0) > "$out/wstest.log" 2>&1 &
  background=$!
  wait_for_port "$port" "$background" || { say "the suite's server did not start; see $out/wstest.log"; return 1; }
  say "client role: autobahn-client against the suite's server on port $port"
  start=$(date +%s)
  timeout "$AUTOBAHN_TIMEOUT" "$(binary autobahn-client)" --url "ws://127.0.0.1:$port" --agent "$agent" \
    > "$out/autobahn-client.log" 2>&1 || status=$?
  say "client role: $(( $(date +%s) - start )) s"
  [ "$status" = 0 ] || say "autobahn-client exited with $status (124: timed out after $AUTOBAHN_TIMEOUT s); see $out/autobahn-client.log"
  stop_background
  summarize "$out" || status=1
  return "$status"
}

summarize() {
  echo "Autobahn|Testsuite $suite_version, $(basename "$1") role, agent $agent ($1/index.html):"
  "$venv/bin/python" "$root/scripts/autobahn-summary.py" "$1" "$agent" "$1/spec.json"
}

ci_cases="1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
for subsection in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
  for case in 1 4 7 10 13 16; do ci_cases+=",$subsection.$case"; done
done

role="${1:-}"
[ $# -gt 0 ] && shift
case_list="*"
exclude_list=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) [ $# -ge 2 ] || usage; case_list="$2"; shift 2 ;;
    --exclude) [ $# -ge 2 ] || usage; exclude_list="$2"; shift 2 ;;
    --ci) case_list="$ci_cases"; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage ;;
    *) say "unknown argument $1"; usage ;;
  esac
done

case "$role" in
  setup) setup ;;
  server|client|both)
    setup
    cases="$(json_list "$case_list")"
    exclude="$(json_list "$exclude_list")"
    status=0
    if [ "$role" != client ]; then run_server_role || status=1; fi
    if [ "$role" != server ]; then run_client_role || status=1; fi
    exit "$status"
    ;;
  *) usage ;;
esac
