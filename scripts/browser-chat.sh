#!/usr/bin/env bash
# The messenger in a real browser: installs Chromium (apt) when missing,
# runs `cport chat --web` on free loopback ports, opens two headless
# Chromium pages through the DevTools protocol (scripts/browser-chat.js,
# Node's built-in WebSocket), has them and a TCP line client talk in one
# room, checks each page shows the others' messages, and saves a
# screenshot (default docs/chat.png; SHOT=path to change).
set -euo pipefail
. "$(dirname "$0")/lib/browser.sh"
browser_init browser-chat
SHOT=${SHOT:-docs/chat.png}

browser_cport chat.out chat --listen 127.0.0.1:0 --web 127.0.0.1:0 --data "$WORK/data"
WEB=$(browser_addr chat.out chat-web)
TCP=$(browser_addr chat.out chat)
browser_chromium

mkdir -p "$(dirname "$SHOT")"
browser_node scripts/browser-chat.js "$WEB" "$TCP" "$SHOT"
