#!/usr/bin/env bash
# Renders the admin dashboard in headless Chromium (Debian package, installed if missing) and
# checks that the page drew its percentile curves: starts ringway with a mock API and admin on
# loopback, sends some traffic, dumps the rendered DOM and takes a screenshot.
# Output: $OUT (default /tmp/ringway-dashboard.png). Exits non-zero if no curve was drawn.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ringway-dashboard.png}
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
source scripts/mock-gateway.sh dash
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/x" >/dev/null; done
FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$W/profile" --virtual-time-budget=5000)
chromium "${FLAGS[@]}" --dump-dom "http://127.0.0.1:$ADMIN/" 2>/dev/null >"$W/dom.html"
chromium "${FLAGS[@]}" --window-size=1000,600 --screenshot="$OUT" "http://127.0.0.1:$ADMIN/" 2>/dev/null
if grep -q "<polyline" "$W/dom.html" && grep -q "api demo/hello" "$W/dom.html"; then
  echo "dashboard rendered: curve drawn for demo/hello; screenshot at $OUT"
else
  echo "dashboard did not draw a curve"; exit 1
fi
