#!/usr/bin/env bash
# idle.sh - memory per idle HTTP/1.1 keep-alive client connection: ringway beside nginx and
# HAProxy (plain HTTP, each one worker / thread, proxying to one nginx origin). For each proxy
# and each count in IDLE, bench/idle_clients.py opens that many connections, sends one request
# on each, reads the answer and leaves the connection open and silent; after SETTLE seconds
# (longer than ringway's 1 s park delay) and once the figure has settled, the proxy's resident
# memory growth per connection is reported (RSS minus lazily freed pages, from
# /proc/PID/smaps_rollup). Before the first count
# each proxy is warmed with WARM connections (one request each, held idle for SETTLE seconds,
# then closed), so what it allocates once on first use (metrics, histograms, caches, event
# arrays) is not charged to idle connections.
# Knobs: IDLE ["1000 9000"], SETTLE [3], WARM [500], RINGWAY_BIN, HTTP_EXTRA (lines for ringway's [http],
# e.g. "idle_park_ms = 0"), TARGETS ["nginx haproxy ringway"], TLS [0] (1: every proxy listens with
# HTTPS, one ECDSA P-256 certificate made here, as bench/tls.sh; the clients speak TLS 1.3, the
# origin stays plain), SILENT [0] (1: the clients send no request; with TLS=1 they stay as the
# handshake left them). Needs nginx, haproxy, python3 (and openssl for TLS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-"1000 9000"}; SETTLE=${SETTLE:-3}; TLS=${TLS:-0}
# silent clients: every proxy waits 300 s for a first request (nginx 60 s and ringway 10 s by
# default would close them mid-measurement; HAProxy's wait is its 300 s client timeout)
CLIENT_SILENT=; NGX_WAIT=; HTTP_EXTRA=${HTTP_EXTRA:-}
if [[ "${SILENT:-0}" == 1 ]]; then
  CLIENT_SILENT=--silent; NGX_WAIT="client_header_timeout 300s;"
  HTTP_EXTRA="$HTTP_EXTRA
header_timeout_ms = 300000"
fi
source bench/sides.sh idle
write_origin
if [[ "$TLS" == 1 ]]; then
  make_cert
  write_nginx ssl "$NGX_TLS ssl_session_cache shared:SSL:10m; ssl_session_tickets on; $NGX_WAIT"
  write_haproxy; haproxy_tls
  write_ringway "$HTTP_EXTRA" "" "$RW_TLS"
  CLIENT_TLS=--tls
else
  write_nginx "" "$NGX_WAIT"; write_haproxy; write_ringway "$HTTP_EXTRA"
  CLIENT_TLS=
fi
start origin "$ORIGIN" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" haproxy -db -f "$W/haproxy.cfg"
start ringway "$RW" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
printf "%-8s %8s %12s %12s\n" target conns rss_growth kib_per_conn
# opens N connections to PORT (each after one request) and holds them; HOLDER is its PID
hold() {
  rm -f "$W/ready"
  python3 bench/idle_clients.py $CLIENT_TLS $CLIENT_SILENT 127.0.0.1 "$1" "$2" "$W/ready" &
  HOLDER=$!
  for _ in $(seq 1 600); do [[ -e "$W/ready" ]] && break; sleep 0.1; done
}
release() { kill "$HOLDER" 2>/dev/null || true; wait "$HOLDER" 2>/dev/null || true; }
# resident memory once it stops moving (three samples a second apart agree; at most 30 s): a
# proxy that frees memory after its connections go idle (ringway's parking, and its allocator's
# purges on the quiet ticks that follow) is measured settled, not mid-way
settled_rss() {
  local a b same=0
  a=$(rss_kib "$1")
  for _ in $(seq 1 30); do
    sleep 1; b=$(rss_kib "$1")
    if [[ "$a" == "$b" ]]; then same=$((same + 1)); else same=0; fi
    (( same >= 2 )) && break
    a=$b
  done
  echo "$b"
}
for t in ${TARGETS:-nginx haproxy ringway}; do
  if (( ${WARM:-500} > 0 )); then hold "${PORT[$t]}" "${WARM:-500}"; sleep "$SETTLE"; release; fi
done
sleep "$SETTLE"
for n in $IDLE; do
  for t in ${TARGETS:-nginx haproxy ringway}; do
    before=$(settled_rss "${PID[$t]}")
    hold "${PORT[$t]}" "$n"
    sleep "$SETTLE"
    after=$(settled_rss "${PID[$t]}")
    release
    printf "%-8s %8s %12s %12s\n" "$t" "$n" "$((after - before))" "$(awk -v d=$((after - before)) -v n="$n" 'BEGIN{printf "%.2f", d/n}')"
  done
done
