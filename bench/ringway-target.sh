#!/usr/bin/env bash
# anchors.sh EXTRA target: writes a ringway config proxying $LISTEN_ADDR → $BACKEND_ADDR into
# $WORKDIR and runs the release binary in the foreground (workers = the CPUs it is pinned to).
set -euo pipefail
BIN=${RINGWAY_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/ringway}
cat >"$WORKDIR/ringway.toml" <<TOML
[instance]
workers = "auto"
egress_ip = "127.0.0.1"

[[listener]]
listen = "$LISTEN_ADDR"

[upstream.backend]
endpoints = [{ addr = "$BACKEND_ADDR" }]
pool_idle_timeout_ms = 290000
max_requests_per_connection = 100000000

[http]
keepalive_timeout_ms = 300000
keepalive_requests = 100000000

[service.bench]
[[service.bench.api]]
name = "all"
path = "/*"
upstream = "backend"
TOML
RUST_LOG=warn exec "$BIN" -c "$WORKDIR/ringway.toml"
