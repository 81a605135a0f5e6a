#!/usr/bin/env bash
# anchors.sh EXTRA target: writes a ringway config proxying $LISTEN_ADDR → $BACKEND_ADDR into
# $WORKDIR and runs the release binary in the foreground (workers = the CPUs it is pinned to).
# Optional: RINGWAY_BIN (binary), ADMIN_ADDR (enables [admin]), ACCESS_LOG (a path, emptied first: enables the
# JSON access log there), HTTP_EXTRA (lines added to [http], e.g. "response_request_id = false"),
# TLS_CERT + TLS_KEY (the listener speaks HTTPS with them), IO_DRIVER (instance.io_driver, e.g.
# legacy; default auto).
set -euo pipefail
BIN=${RINGWAY_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/ringway}
CONF="$WORKDIR/ringway-${LISTEN_ADDR##*:}.toml"
EXTRA_TOML=""
[[ -n "${ADMIN_ADDR:-}" ]] && EXTRA_TOML+=$'[admin]\nlisten = "'"$ADMIN_ADDR"$'"\n'
# the log starts empty each run (appending across runs filled a disk once: 1.4 GB of old lines)
[[ -n "${ACCESS_LOG:-}" ]] && { : >"$ACCESS_LOG"; EXTRA_TOML+=$'[access_log]\npath = "'"$ACCESS_LOG"$'"\n'; }
cat >"$CONF" <<TOML
$EXTRA_TOML
[instance]
workers = "auto"
io_driver = "${IO_DRIVER:-auto}"
egress_ip = "127.0.0.1"

[[listener]]
listen = "$LISTEN_ADDR"
$([[ -n "${TLS_CERT:-}" ]] && printf '[[listener.tls]]\ncert = "%s"\nkey = "%s"\n' "$TLS_CERT" "$TLS_KEY")

[upstream.backend]
endpoints = [{ addr = "$BACKEND_ADDR" }]
pool_idle_timeout_ms = 290000
max_requests_per_connection = 100000000
pool_max_idle_per_endpoint = 4096

[http]
keepalive_timeout_ms = 300000
keepalive_requests = 100000000
${HTTP_EXTRA:-}

[service.bench]
[[service.bench.api]]
name = "all"
path = "/*"
upstream = "backend"
TOML
RUST_LOG=warn exec "$BIN" -c "$CONF"
