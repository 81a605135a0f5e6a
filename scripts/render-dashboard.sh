#!/usr/bin/env bash
# Renders the admin dashboard in headless Chromium (Debian package, installed if missing) and
# checks that the page shows live traffic: starts ringway with a mock API and admin on loopback,
# keeps traffic flowing while Chromium renders, dumps the rendered DOM and takes a screenshot.
# Output: $OUT (default /tmp/ringway-dashboard.png). Exits non-zero if no request rate was drawn.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ringway-dashboard.png}
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
source scripts/mock-gateway.sh dash
( end=$((SECONDS + 20)); while [ $SECONDS -lt $end ]; do curl -sf "http://127.0.0.1:$PORT/x" >/dev/null || true; done ) &
PIDS+=($!)
sleep 1
FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$W/profile" --virtual-time-budget=5000)
chromium "${FLAGS[@]}" --dump-dom "http://127.0.0.1:$ADMIN/" 2>/dev/null >"$W/dom.html"
chromium "${FLAGS[@]}" --window-size=1000,600 --screenshot="$OUT" "http://127.0.0.1:$ADMIN/" 2>/dev/null
# a non-zero request rate in the first cell of the API's table, and its sparkline
if grep -q "<polyline" "$W/dom.html" && grep -q "api demo/hello" "$W/dom.html" \
   && grep -Eq "<tr><td>[1-9][0-9]*\.[0-9]</td>" "$W/dom.html"; then
  echo "dashboard rendered: live request rate and sparkline for demo/hello; screenshot at $OUT"
else
  echo "dashboard did not show the traffic"; exit 1
fi
