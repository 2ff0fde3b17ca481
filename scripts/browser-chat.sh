#!/usr/bin/env bash
# The messenger in a real browser: installs Chromium (apt) when missing,
# runs `cport chat --web` on free loopback ports, opens two headless
# Chromium pages through the DevTools protocol (scripts/browser-chat.js,
# Node's built-in WebSocket), has them and a TCP line client talk in one
# room, checks each page shows the others' messages, and saves a
# screenshot (default docs/chat.png; SHOT=path to change).
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${SHOT:-docs/chat.png}

CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "== installing chromium"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    CHROME=$(command -v chromium)
fi
command -v node >/dev/null || { echo "browser-chat: node not found" >&2; exit 1; }

cargo build -q -p cport-cli --bin cport
CPORT=${CARGO_TARGET_DIR:-target}/debug/cport
WORK=$(mktemp -d /tmp/cport-browser-chat.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

RUST_LOG=warn "$CPORT" chat --listen 127.0.0.1:0 --web 127.0.0.1:0 --data "$WORK/data" >"$WORK/chat.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    WEB=$(sed -n 's/^cport chat-web: listening on \([0-9.:]*\) .*/\1/p' "$WORK/chat.out")
    TCP=$(sed -n 's/^cport chat: listening on \([0-9.:]*\) .*/\1/p' "$WORK/chat.out")
    [ -n "$WEB" ] && [ -n "$TCP" ] && break
    sleep 0.1
done
[ -n "${WEB:-}" ] || { echo "browser-chat: cport chat did not start" >&2; cat "$WORK/chat.out" >&2; exit 1; }

"$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$WORK/profile" --remote-debugging-port=0 \
    about:blank >"$WORK/chrome.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
    [ -s "$WORK/profile/DevToolsActivePort" ] && break
    sleep 0.1
done
[ -s "$WORK/profile/DevToolsActivePort" ] || { echo "browser-chat: chromium did not start" >&2; tail "$WORK/chrome.log" >&2; exit 1; }
PORT=$(sed -n 1p "$WORK/profile/DevToolsActivePort")
BROWSER_PATH=$(sed -n 2p "$WORK/profile/DevToolsActivePort")

mkdir -p "$(dirname "$SHOT")"
timeout 120 node --experimental-websocket --no-warnings scripts/browser-chat.js \
    "ws://127.0.0.1:$PORT$BROWSER_PATH" "$WEB" "$TCP" "$SHOT"
