# Sourced by the end-to-end benchmarks: small helpers they share.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# median JQ_EXPR: the median of JQ_EXPR over the JSON results (one per line) on stdin.
median() { jq -s "map($1) | sort | .[length/2|floor]"; }

# fmt NUMBER [DECIMALS]: NUMBER printed with DECIMALS (default 0) decimals.
fmt() { printf "%.${2:-0}f" "$1"; }

# wait_for FILE PATTERN [SECONDS]: until the process writing FILE printed PATTERN (SECONDS,
# default 30, at most); otherwise its output and exit 1.
wait_for() {
    for _ in $(seq $((${3:-30} * 10))); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "did not start; its output:" >&2
    cat "$1" >&2
    exit 1
}

# wait_for_port PORT: until something accepts connections on 127.0.0.1:PORT (10 s at most),
# for servers that print nothing when ready; otherwise exit 1.
wait_for_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

# make_work_dir NAME: WORK, a temporary directory removed on exit, and PIDS, the background
# processes a script adds to it, killed and waited for on exit (INT and TERM exit 130 the
# same way).
make_work_dir() {
    WORK=$(mktemp -d "/tmp/switchboard-$1.XXXXXX")
    PIDS=()
    trap cleanup_work_dir EXIT
    trap 'exit 130' INT TERM
}
cleanup_work_dir() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
