#!/usr/bin/env bash
# ringway's own latency histogram beside wrk's, for the same run: starts an nginx origin and
# ringway (admin enabled) on loopback, resets ringway's latency window, runs wrk once, then prints
# wrk's percentiles (and oha's, when installed) and GET /stats/latency?format=text.
# Knobs: DUR [10], CONNS [50], URLPATH [/].
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; CONNS=${CONNS:-50}; URLPATH=${URLPATH:-/}
for b in wrk nginx curl; do command -v $b >/dev/null || { echo "missing $b (apt-get install wrk nginx-light curl)"; exit 1; }; done
source bench/lib.sh latency
taskset -c 0 nginx -p "$W" -c "$W/origin.conf" -e "$W/error.log" & PIDS+=($!)
export WORKDIR=$W LISTEN_ADDR=127.0.0.1:$PROXY BACKEND_ADDR=127.0.0.1:$ORIGIN ADMIN_ADDR=127.0.0.1:$ADMIN
taskset -c 1 bash bench/ringway-target.sh & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://$ADMIN_ADDR/healthz" >/dev/null && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c"$CONNS" -d2s "http://$LISTEN_ADDR$URLPATH" >/dev/null   # warm-up
curl -sf "http://$ADMIN_ADDR/stats/latency?reset=1" >/dev/null
echo "== wrk -t1 -c$CONNS -d${DUR}s (client-side latency, includes the client's own queueing)"
taskset -c 0 wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://$LISTEN_ADDR$URLPATH" | sed -n '/Latency Distribution/,/requests in/p'
if command -v oha >/dev/null; then
  echo "== oha -z ${DUR}s -c $CONNS (same window; ringway's counts below include both runs)"
  taskset -c 0 oha -z "${DUR}s" -c "$CONNS" --no-tui "http://$LISTEN_ADDR$URLPATH" | sed -n '/Response time distribution/,/^$/p'
fi
echo "== ringway GET /stats/latency?format=text (gateway-side: complete head → last byte written)"
curl -sf "http://$ADMIN_ADDR/stats/latency?format=text" | grep -E "^(latency|scope|listener|api .*total|upstream .*(total|first_byte))"
