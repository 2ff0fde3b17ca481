#!/usr/bin/env bash
# The upload form in a real browser: installs Chromium (apt) when missing,
# runs `cport http` with uploads on a free loopback port, opens the bundled
# page in headless Chromium through the DevTools protocol
# (scripts/browser-upload.js, Node's built-in WebSocket), uploads a file
# with a wrong token (refused) and the right one (stored, sha-256
# verified), checks the recent-uploads list and that the stored file is
# byte-identical, fails on any script or console error, and saves a
# screenshot (default docs/upload.png; SHOT=path to change).
set -euo pipefail
cd "$(dirname "$0")/.."
SHOT=${SHOT:-docs/upload.png}

CHROME=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROME" ]; then
    echo "== installing chromium"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    CHROME=$(command -v chromium)
fi
command -v node >/dev/null || { echo "browser-upload: node not found" >&2; exit 1; }

cargo build -q -p cport-cli --bin cport
CPORT=${CARGO_TARGET_DIR:-target}/debug/cport
WORK=$(mktemp -d /tmp/cport-browser-upload.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

echo "token-$$-$RANDOM" >"$WORK/token"
head -c 3000000 /dev/urandom >"$WORK/holiday photo.jpg"
RUST_LOG=warn "$CPORT" http --listen 127.0.0.1:0 --upload-dir "$WORK/up" --upload-token-file "$WORK/token" \
    >"$WORK/http.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    WEB=$(sed -n 's/^cport http: listening on \([0-9.:]*\) .*/\1/p' "$WORK/http.out")
    [ -n "$WEB" ] && break
    sleep 0.1
done
[ -n "${WEB:-}" ] || { echo "browser-upload: cport http did not start" >&2; cat "$WORK/http.out" >&2; exit 1; }

"$CHROME" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --user-data-dir="$WORK/profile" --remote-debugging-port=0 \
    about:blank >"$WORK/chrome.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 200); do
    [ -s "$WORK/profile/DevToolsActivePort" ] && break
    sleep 0.1
done
[ -s "$WORK/profile/DevToolsActivePort" ] || { echo "browser-upload: chromium did not start" >&2; tail "$WORK/chrome.log" >&2; exit 1; }
PORT=$(sed -n 1p "$WORK/profile/DevToolsActivePort")
BROWSER_PATH=$(sed -n 2p "$WORK/profile/DevToolsActivePort")

mkdir -p "$(dirname "$SHOT")"
timeout 120 node --experimental-websocket --no-warnings scripts/browser-upload.js \
    "ws://127.0.0.1:$PORT$BROWSER_PATH" "$WEB" "$(cat "$WORK/token")" "$WORK/holiday photo.jpg" "$SHOT"
cmp "$WORK/holiday photo.jpg" "$WORK/up/holiday photo.jpg"
echo "browser-upload: the stored file is byte-identical to the one the page sent"
