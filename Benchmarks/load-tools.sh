# Sourced by the end-to-end benchmarks: finds the tools they drive, which are not part of
# this repository — the neutral C load generator `wsload` and the Node `ws` peer servers
# (`ws-echo.js`, `ws-pubsub.js`) that every figure is compared against.
#
#   WSLOAD=/path/to/wsload          a built load generator, or
#   LOAD_TOOLS=/path/to/tools       a folder with wsload/wsload.c (built into .build/ with cc) and
#                                   peers/ws-echo.js, peers/ws-pubsub.js
# Without either, the workspace's sibling folder ../shared/tools is tried. A benchmark that
# finds no load generator exits 69 (EX_UNAVAILABLE) saying what it needs.

load_tools_dir() {
    local root="$1"
    if [ -n "${LOAD_TOOLS:-}" ]; then
        echo "$LOAD_TOOLS"
    elif [ -d "$root/../shared/tools/wsload" ]; then
        (cd "$root/../shared/tools" && pwd)
    fi
}

# require_wsload ROOT BUILD: sets WSLOAD (building it from LOAD_TOOLS when BUILD is 1).
require_wsload() {
    local root="$1" build="$2" tools
    tools="$(load_tools_dir "$root")"
    if [ -z "${WSLOAD:-}" ] && [ -n "$tools" ] && [ -f "$tools/wsload/wsload.c" ]; then
        # Built into this checkout's .build: the tools' folder may be read-only.
        WSLOAD="$root/.build/wsload"
        if [ "$build" = 1 ] || [ ! -x "$WSLOAD" ]; then
            mkdir -p "$root/.build"
            cc -O2 -o "$WSLOAD" "$tools/wsload/wsload.c" -lpthread -lz >&2
        fi
    fi
    if [ -z "${WSLOAD:-}" ] || [ ! -x "$WSLOAD" ]; then
        echo "$(basename "$0"): needs the wsload load generator: set WSLOAD=/path/to/wsload, or LOAD_TOOLS to a folder holding wsload/wsload.c" >&2
        exit 69
    fi
}

# require_peer ROOT NAME: prints the path of the Node peer NAME (ws-echo.js, ws-pubsub.js).
require_peer() {
    local tools
    tools="$(load_tools_dir "$1")"
    if [ -z "$tools" ] || [ ! -f "$tools/peers/$2" ]; then
        echo "$(basename "$0"): needs the Node ws peer $2: set LOAD_TOOLS to a folder holding peers/$2" >&2
        exit 69
    fi
    echo "$tools/peers/$2"
}
