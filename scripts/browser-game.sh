#!/usr/bin/env bash
# The game viewer in a real browser: installs Chromium (apt) when missing,
# runs `cport game --web` on free loopback ports with 300 bots playing
# (`cport bench game`), opens the page in headless Chromium through the
# DevTools protocol (scripts/browser-game.js, Node's built-in WebSocket),
# checks that it draws the players moving, shows the counters and follows
# one player, and saves a screenshot (default docs/game.png; SHOT=path).
set -euo pipefail
. "$(dirname "$0")/lib/browser.sh"
browser_init browser-game
SHOT=${SHOT:-docs/game.png}
BOTS=${BOTS:-300}

browser_cport game.out game --listen 127.0.0.1:0 --web 127.0.0.1:0
WEB=$(browser_addr game.out game-web)
GAME=$(browser_addr game.out game)
"$CPORT" bench game --target "$GAME" --bots "$BOTS" --duration 120s >"$WORK/bots.out" 2>&1 &
PIDS+=($!)
browser_chromium

mkdir -p "$(dirname "$SHOT")"
browser_node scripts/browser-game.js "$WEB" "$BOTS" "$SHOT" || { cat "$WORK/bots.out" >&2; exit 1; }
