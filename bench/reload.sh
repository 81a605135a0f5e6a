#!/usr/bin/env bash
# reload.sh - latency under keep-alive load with and without live reloads, same process, same
# load: wrk (50 connections, DUR seconds) against ringway proxying to an nginx origin, once steady
# and once while RELOADS reloads (alternately adding and removing an API) are spread over the
# run. Prints wrk's p50/p99/max and errors for both, and the reloads' outcomes.
# Knobs: DUR [10], RELOADS [20], CONNS [50], CONTROL=1 (same cadence of curl calls, but to
# /healthz: separates the cost of the reloads from that of the harness's curl processes).
# Needs wrk and nginx. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; RELOADS=${RELOADS:-20}; CONNS=${CONNS:-50}
source bench/lib.sh reload
write() { # $1: 1 = with the extra API
  local extra=""
  [[ "$1" == 1 ]] && extra=$'[[service.s.api]]\nname = "extra"\npath = "/extra/*"\nupstream = "o"\n'
  cat >"$W/ringway.toml" <<EOF
[instance]
workers = "auto"
[admin]
listen = "127.0.0.1:$ADMIN"
[[listener]]
listen = "127.0.0.1:$PROXY"
[http]
keepalive_requests = 100000000
[upstream.o]
endpoints = [{ addr = "127.0.0.1:$ORIGIN" }]
[service.s]
[[service.s.api]]
name = "all"
path = "/*"
upstream = "o"
$extra
EOF
}
nginx -p "$W" -e "$W/error.log" -c "$W/origin.conf" &
PIDS+=($!)
write 0
RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" &
PIDS+=($!)
for _ in $(seq 1 50); do curl -sf "127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
run() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$PROXY/" | awk '
  /Latency Distribution/ {d=1} d && /50%/ {p50=$2} d && /99%/ {p99=$2}
  /^    Latency/ {max=$4} /Socket errors/ {err=$0} /Non-2xx/ {non=$0} /Requests\/sec/ {rps=$2}
  END {printf "rps=%s p50=%s p99=%s max=%s %s %s\n", rps, p50, p99, max, err, non}'; }
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PROXY/" >/dev/null   # warm-up
echo "steady:       $(run)"
(
  sleep 1
  gap=$(awk -v d="$DUR" -v n="$RELOADS" 'BEGIN{printf "%.3f", (d-2)/n}')
  for i in $(seq 1 "$RELOADS"); do
    if [[ "${CONTROL:-0}" == 1 ]]; then
      curl -s -o /dev/null -w "%{http_code} " "127.0.0.1:$ADMIN/healthz"
    else
      write $((i % 2))
      curl -s -o /dev/null -w "%{http_code} " -XPOST "127.0.0.1:$ADMIN/reload"
    fi
    sleep "$gap"
  done
  echo
) > "$W/reloads.txt" &
reloader=$!
echo "with reloads: $(run)"
wait "$reloader"
echo "reload answers: $(cat "$W/reloads.txt")"
curl -s "127.0.0.1:$ADMIN/config" | head -c 120; echo
