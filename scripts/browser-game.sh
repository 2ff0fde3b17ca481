#!/usr/bin/env bash
# The game viewer in a real browser: installs Chromium (apt) when missing,
# runs `cport game --web` on free loopback ports with 300 bots playing
# (`cport bench game`), opens the page in headless Chromium through the
# DevTools protocol (scripts/browser-game.js, Node's built-in WebSocket),
# checks that it draws the players moving, shows the counters and follows
# one player, and saves a screenshot (default docs/game.png; SHOT=path).
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${SHOT:-docs/game.png}
BOTS=${BOTS:-300}

CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "== installing chromium"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    CHROME=$(command -v chromium)
fi
command -v node >/dev/null || { echo "browser-game: node not found" >&2; exit 1; }

cargo build -q -p cport-cli --bin cport
CPORT=${CARGO_TARGET_DIR:-target}/debug/cport
WORK=$(mktemp -d /tmp/cport-browser-game.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

RUST_LOG=warn "$CPORT" game --listen 127.0.0.1:0 --web 127.0.0.1:0 >"$WORK/game.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    WEB=$(sed -n 's/^cport game-web: listening on \([0-9.:]*\) .*/\1/p' "$WORK/game.out")
    GAME=$(sed -n 's/^cport game: listening on \([0-9.:]*\) .*/\1/p' "$WORK/game.out")
    [ -n "$WEB" ] && [ -n "$GAME" ] && break
    sleep 0.1
done
[ -n "${WEB:-}" ] || { echo "browser-game: cport game did not start" >&2; cat "$WORK/game.out" >&2; exit 1; }
"$CPORT" bench game --target "$GAME" --bots "$BOTS" --duration 120s >"$WORK/bots.out" 2>&1 &
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
[ -s "$WORK/profile/DevToolsActivePort" ] || { echo "browser-game: chromium did not start" >&2; tail "$WORK/chrome.log" >&2; exit 1; }
PORT=$(sed -n 1p "$WORK/profile/DevToolsActivePort")
BROWSER_PATH=$(sed -n 2p "$WORK/profile/DevToolsActivePort")

mkdir -p "$(dirname "$SHOT")"
timeout 120 node --experimental-websocket --no-warnings scripts/browser-game.js \
    "ws://127.0.0.1:$PORT$BROWSER_PATH" "$WEB" "$BOTS" "$SHOT" || { cat "$WORK/bots.out" >&2; exit 1; }
