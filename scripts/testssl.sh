#!/usr/bin/env bash
# testssl.sh against an HTTPS listener of the release build: protocols, ciphers, vulnerabilities.
# Installs Debian's testssl.sh when missing (root), makes an ECDSA P-256 test certificate, starts
# ringway on a free loopback port, runs testssl.sh, stops ringway by PID. Bounded: testssl.sh's own
# timeouts plus `timeout 600`. Output: the full report in $OUT (default: a temp dir) and its
# findings of severity LOW or worse on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "testssl.sh missing: apt-get install testssl.sh" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null 2>&1; }
fi
TESTSSL=$(command -v testssl || command -v testssl.sh)
cargo build --release --quiet
W=$(mktemp -d -t ringway-testssl.XXXXXX)
OUT=${OUT:-$W}
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; [ "$OUT" = "$W" ] || rm -rf "$W"; }
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/ringway.toml" <<EOF
[instance]
workers = 1
[[listener]]
listen = "127.0.0.1:$PORT"
[[listener.tls]]
cert = "cert.pem"
key = "key.pem"
[service.s]
[[service.s.api]]
name = "hello"
path = "/*"
mock = { body = "hello\n" }
EOF
RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" &
PID=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
timeout 600 "$TESTSSL" --quiet --color 0 --warnings off --jsonfile "$OUT/testssl.json" "127.0.0.1:$PORT" >"$OUT/testssl.txt" 2>&1 || true
echo "full report: $OUT/testssl.txt"
python3 - "$OUT/testssl.json" <<'EOF'
import json, sys
rank = {"OK": 0, "INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4, "WARN": 1}
items = json.load(open(sys.argv[1]))
bad = [i for i in items if rank.get(i.get("severity", "INFO"), 0) >= 1]
for i in bad:
    print(f'{i["severity"]:8} {i["id"]:32} {i["finding"]}')
print(f"{len(bad)} findings of severity LOW or worse out of {len(items)} checks")
EOF
