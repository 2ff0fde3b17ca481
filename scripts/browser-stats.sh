#!/usr/bin/env bash
# The all-servers page in a real browser: installs Chromium (apt) when
# missing, runs `cport serve` on free loopback ports with echo load running
# (`cport bench echo`), opens the bundled page in headless Chromium through
# the DevTools protocol (scripts/browser-stats.js, Node's built-in
# WebSocket), checks that it lists every server and draws the live charts
# (completions/s, in flight, latency p99), and saves a screenshot of that
# section (default docs/stats.png; SHOT=path).
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${SHOT:-docs/stats.png}
# Samples (one a second) on the charts before the checks and the screenshot.
SAMPLES=${SAMPLES:-12}

CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "== installing chromium"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    CHROME=$(command -v chromium)
fi
command -v node >/dev/null || { echo "browser-stats: node not found" >&2; exit 1; }

cargo build -q -p cport-cli --bin cport
CPORT=${CARGO_TARGET_DIR:-target}/debug/cport
WORK=$(mktemp -d /tmp/cport-browser-stats.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

ANY=127.0.0.1:0
CPORT_DATA="$WORK" RUST_LOG=warn "$CPORT" serve --echo $ANY --chat $ANY --game $ANY --http $ANY >"$WORK/serve.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    WEB=$(sed -n 's/^cport http: listening on \([0-9.:]*\) .*/\1/p' "$WORK/serve.out")
    ECHO=$(sed -n 's/^cport echo: listening on \([0-9.:]*\) .*/\1/p' "$WORK/serve.out")
    [ -n "$WEB" ] && [ -n "$ECHO" ] && break
    sleep 0.1
done
[ -n "${WEB:-}" ] || { echo "browser-stats: cport serve did not start" >&2; cat "$WORK/serve.out" >&2; exit 1; }
"$CPORT" bench echo --target "$ECHO" --conns 20 --rate 5000 --duration 120s --warmup 0s >"$WORK/load.out" 2>&1 &
PIDS+=($!)

"$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$WORK/profile" --remote-debugging-port=0 \
    about:blank >"$WORK/chrome.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
    [ -s "$WORK/profile/DevToolsActivePort" ] && break
    sleep 0.1
done
[ -s "$WORK/profile/DevToolsActivePort" ] || { echo "browser-stats: chromium did not start" >&2; tail "$WORK/chrome.log" >&2; exit 1; }
PORT=$(sed -n 1p "$WORK/profile/DevToolsActivePort")
BROWSER_PATH=$(sed -n 2p "$WORK/profile/DevToolsActivePort")

mkdir -p "$(dirname "$SHOT")"
timeout $((120 + SAMPLES)) node --experimental-websocket --no-warnings scripts/browser-stats.js \
    "ws://127.0.0.1:$PORT$BROWSER_PATH" "$WEB" "$SHOT" "$SAMPLES" || { cat "$WORK/load.out" >&2; exit 1; }
