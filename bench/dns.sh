#!/usr/bin/env bash
# dns.sh - latency under keep-alive load while a DNS name's record flips every second, against
# the same load with a steady record: wrk (CONNS connections, DUR seconds) through ringway to a
# name resolved by dnsmasq (refresh 200 ms) that points at one of two nginx origins (127.0.0.2
# and 127.0.0.3, same port). Each of REPS rounds runs a steady and a flipping run, interleaved;
# prints each run's wrk p50/p99/errors, how many switches ringway made, and the median p99 ratio.
# Knobs: DUR [10], CONNS [50], REPS [3]. Needs wrk, nginx, dnsmasq. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; CONNS=${CONNS:-50}; REPS=${REPS:-3}
source bench/lib.sh dns
DNSPORT=$(free_port)
for ip in 127.0.0.2 127.0.0.3; do
  sed "s/listen 127.0.0.1:$ORIGIN/listen $ip:$ORIGIN/; s#$W/nginx.pid#$W/nginx-$ip.pid#" "$W/origin.conf" >"$W/origin-$ip.conf"
  start_origin "$W/origin-$ip.conf"
done
echo "127.0.0.2 flip.test" >"$W/hosts"
/usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 \
  --port="$DNSPORT" --addn-hosts="$W/hosts" --local-ttl=1 --no-negcache --user=root --pid-file="$W/dnsmasq.pid" &
DNSMASQ=$!
PIDS+=($DNSMASQ)
{
  gateway_toml "resolver = [\"127.0.0.1:$DNSPORT\"]" "flip.test:$ORIGIN"
  echo "dns_refresh_ms = 200"
  service_toml s
} >"$W/ringway.toml"
start_ringway
for _ in $(seq 1 50); do curl -sf "127.0.0.1:$PROXY/" >/dev/null && break; sleep 0.1; done
generation() { curl -s "127.0.0.1:$ADMIN/config" | sed -n 's/^{"generation":\([0-9]*\).*/\1/p'; }
flipper() { # flips the record every second for $1 seconds
  local i=0
  while [ "$i" -lt "$1" ]; do
    if [ $((i % 2)) = 0 ]; then echo "127.0.0.3 flip.test"; else echo "127.0.0.2 flip.test"; fi >"$W/hosts"
    kill -HUP "$DNSMASQ"
    sleep 1
    i=$((i + 1))
  done
}
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PROXY/" >/dev/null   # warm-up
STEADY=(); FLIP=()
for r in $(seq 1 "$REPS"); do
  for kind in steady flip; do
    g0=$(generation)
    [[ $kind == flip ]] && { flipper "$DUR" & fp=$!; }
    read -r n rps p50 p99 non <<<"$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$PROXY/" | wrk_summary)"
    [[ $kind == flip ]] && wait "$fp"
    g1=$(generation)
    v=$(to_ms "$p99")
    [[ $kind == steady ]] && STEADY+=("$v") || FLIP+=("$v")
    printf '%d %-6s rps=%s p50=%s p99=%s non2xx=%s switches=%d\n' "$r" "$kind" "$rps" "$p50" "$p99" "$non" $((g1 - g0))
  done
done
ms_=$(median "${STEADY[@]}"); mf=$(median "${FLIP[@]}")
echo "median p99: steady ${ms_} ms, flipping ${mf} ms, ratio $(awk -v a="$mf" -v b="$ms_" 'BEGIN{printf "%.2f", a/b}')"
