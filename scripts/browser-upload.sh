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
. "$(dirname "$0")/lib/browser.sh"
browser_init browser-upload
SHOT=${SHOT:-docs/upload.png}

echo "token-$$-$RANDOM" >"$WORK/token"
head -c 3000000 /dev/urandom >"$WORK/holiday photo.jpg"
browser_cport http.out http --listen 127.0.0.1:0 --upload-dir "$WORK/up" --upload-token-file "$WORK/token"
WEB=$(browser_addr http.out http)
browser_chromium

mkdir -p "$(dirname "$SHOT")"
browser_node scripts/browser-upload.js "$WEB" "$(cat "$WORK/token")" "$WORK/holiday photo.jpg" "$SHOT"
cmp "$WORK/holiday photo.jpg" "$WORK/up/holiday photo.jpg"
echo "browser-upload: the stored file is byte-identical to the one the page sent"
