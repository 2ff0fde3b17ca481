# What the browser checks (scripts/browser-*.sh) share; source it, then:
#   browser_init NAME            cd to the repository, find or install Chromium
#                                (apt) and node, build `cport`, make $WORK (removed
#                                at exit, with every process started here)
#   browser_cport OUT ARGS...    run `cport ARGS` in the background, output in $WORK/OUT
#   browser_addr OUT SERVER      print where SERVER ("chat-web", "http", ...)
#                                listens, waiting up to 10 s for its line
#   browser_chromium             start headless Chromium; sets $DEVTOOLS (its
#                                DevTools WebSocket URL)
#   browser_node SCRIPT ARGS...  run SCRIPT (a scripts/lib/cdp.js client) against
#                                $DEVTOOLS with ARGS, for up to 120 s
# `set -euo pipefail` is the caller's. Failures print "NAME: why" and exit 1.

browser_init() {
    NAME=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/../.."
    CHROME=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$CHROME" ]; then
        echo "== installing chromium"
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
        CHROME=$(command -v chromium)
    fi
    command -v node >/dev/null || { echo "$NAME: node not found" >&2; exit 1; }
    cargo build -q -p cport-cli --bin cport
    CPORT=${CARGO_TARGET_DIR:-target}/debug/cport
    WORK=$(mktemp -d "/tmp/cport-$NAME.XXXXXX")
    PIDS=()
    trap browser_cleanup EXIT
}

# Stops what the script started and removes $WORK; never fails the run (a
# killed child's status, or Chromium still writing its profile).
browser_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}

browser_cport() {
    local out=$1
    shift
    RUST_LOG=warn "$CPORT" "$@" >"$WORK/$out" 2>&1 &
    PIDS+=($!)
}

browser_addr() {
    local out=$1 server=$2 addr=""
    for _ in $(seq 100); do
        addr=$(sed -n "s/^cport $server: listening on \([0-9.:]*\) .*/\1/p" "$WORK/$out")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "$NAME: cport $server did not start" >&2; cat "$WORK/$out" >&2; exit 1; }
    echo "$addr"
}

browser_chromium() {
    "$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --user-data-dir="$WORK/profile" --remote-debugging-port=0 \
        about:blank >"$WORK/chrome.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do
        [ -s "$WORK/profile/DevToolsActivePort" ] && break
        sleep 0.1
    done
    [ -s "$WORK/profile/DevToolsActivePort" ] || { echo "$NAME: chromium did not start" >&2; tail "$WORK/chrome.log" >&2; exit 1; }
    DEVTOOLS="ws://127.0.0.1:$(sed -n 1p "$WORK/profile/DevToolsActivePort")$(sed -n 2p "$WORK/profile/DevToolsActivePort")"
}

browser_node() {
    local script=$1
    shift
    timeout 120 node --experimental-websocket --no-warnings "$script" "$DEVTOOLS" "$@"
}
