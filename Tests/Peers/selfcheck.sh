#!/usr/bin/env bash
# Checks the interop peers against each other before the Swift tests rely on them:
# node client -> python server and python client -> node server, with and without
# permessage-deflate (and node<->node, python<->python for good measure). Each pair runs the
# scripted exchange with a subprotocol, then again with --check-commands (exercises the server
# command protocol). Loopback only; every step bounded by `timeout`. Exit 0 iff all pass.
# Usage: Tests/Peers/selfcheck.sh      (needs scripts/setup.sh to have run)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export NODE_PATH=/usr/share/nodejs
node_peer=(node "$here/node-peer.js")
python_peer=(python3 "$here/python-peer.py")
work=$(mktemp -d)
server_pid=""
cleanup() {
  exec 3>&- 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0

start_server() { # $1 = node|python, rest = server options; sets $port and $server_pid
  local impl=$1; shift
  local -n cmd="${impl}_peer"
  rm -f "$work/stdin" "$work/server.out" && mkfifo "$work/stdin" # no stale LISTENING line
  exec 3<>"$work/stdin" # we hold the only writer; closing fd 3 sends the server EOF
  "${cmd[@]}" server --max-seconds 60 "$@" <"$work/stdin" >"$work/server.out" 2>"$work/server.err" 3>&- &
  server_pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(awk '/^LISTENING /{print $2; exit}' "$work/server.out" 2>/dev/null || true)
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "selfcheck: $impl server did not start"; cat "$work/server.err"
  return 1
}

stop_server() {
  exec 3>&-
  for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "selfcheck: server $server_pid ignored stdin EOF"; kill "$server_pid"; failed=$((failed + 1))
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

run_client() { # $1 = label, $2 = node|python, rest = client options
  local label=$1 impl=$2; shift 2
  local -n cmd="${impl}_peer"
  local out rc=0
  out=$(timeout 40 "${cmd[@]}" client --url "ws://127.0.0.1:$port/selfcheck" "$@" 2>"$work/client.err") || rc=$?
  if [ $rc -eq 0 ] && grep -q '^RESULT {"ok":true' <<<"$out"; then
    echo "ok   $label: $out"; passed=$((passed + 1))
  else
    echo "FAIL $label (exit $rc): $out"; sed 's/^/     client: /' "$work/client.err"
    sed 's/^/     server: /' "$work/server.err"; failed=$((failed + 1))
  fi
}

for pair in "node python" "python node" "node node" "python python"; do
  read -r client server <<<"$pair"
  for deflate in "" "--deflate"; do
    label="$client client -> $server server${deflate:+ (deflate)}"
    start_server "$server" --protocol chat $deflate || { failed=$((failed + 1)); continue; }
    run_client "$label" "$client" --protocol chat $deflate
    run_client "$label, commands" "$client" --check-commands $deflate
    stop_server
  done
done

echo "selfcheck: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
