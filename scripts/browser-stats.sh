#!/usr/bin/env bash
# The all-servers page in a real browser: installs Chromium (apt) when
# missing, runs `cport serve` on free loopback ports with echo load running
# (`cport bench echo`), opens the bundled page in headless Chromium through
# the DevTools protocol (scripts/browser-stats.js, Node's built-in
# WebSocket), checks that it lists every server and draws the live charts
# (completions/s, in flight, latency p99), and saves a screenshot of that
# section (default docs/stats.png; SHOT=path).
set -euo pipefail
. "$(dirname "$0")/lib/browser.sh"
browser_init browser-stats
SHOT=${SHOT:-docs/stats.png}
# Samples (one a second) on the charts before the checks and the screenshot.
SAMPLES=${SAMPLES:-12}

ANY=127.0.0.1:0
export CPORT_DATA="$WORK" # the chat history and game saves, removed with $WORK
browser_cport serve.out serve --echo $ANY --chat $ANY --game $ANY --http $ANY
WEB=$(browser_addr serve.out http)
ECHO=$(browser_addr serve.out echo)
"$CPORT" bench echo --target "$ECHO" --conns 20 --rate 5000 --duration 120s --warmup 0s >"$WORK/load.out" 2>&1 &
PIDS+=($!)
browser_chromium

mkdir -p "$(dirname "$SHOT")"
browser_node scripts/browser-stats.js "$WEB" "$SHOT" "$SAMPLES" || { cat "$WORK/load.out" >&2; exit 1; }
