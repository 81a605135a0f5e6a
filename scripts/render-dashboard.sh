#!/usr/bin/env bash
# Renders the admin dashboard in headless Chromium (Debian package, installed if missing) and
# checks that the page drew its percentile curves: starts ringway with a mock API and admin on
# loopback, sends some traffic, dumps the rendered DOM and takes a screenshot.
# Output: $OUT (default /tmp/ringway-dashboard.png). Exits non-zero if no curve was drawn.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ringway-dashboard.png}
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
cargo build --release --quiet
W=$(mktemp -d -t ringway-dash.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port)
cat >"$W/ringway.toml" <<TOML
[admin]
listen = "127.0.0.1:$ADMIN"
[[listener]]
listen = "127.0.0.1:$PORT"
[service.demo]
[[service.demo.api]]
name = "hello"
path = "/*"
mock = { body = "hi" }
TOML
RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" & PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
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
