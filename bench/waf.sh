#!/usr/bin/env bash
# waf.sh - what the WAF hook costs, in one run: wrk (CONNS keep-alive connections, DUR seconds)
# against ringway proxying GET requests to an nginx origin, on three services that differ only
# in their WAF: none (`off`); a stub WAF, a second nginx answering 200 at once (`stub`); and
# Apache + ModSecurity + the OWASP CRS (scripts/waf-crs.sh) (`crs`). They run in turn, REPS
# rounds. For each run: throughput, wrk's p50/p99, ringway's own CPU per request (its threads'
# run time from /proc/PID/task/*/schedstat, ns, over the requests wrk completed) and the `waf`
# phase p50/p99 from /stats/latency (µs).
# The WAF call's own ringway cost = CPU/request `stub` - CPU/request `off` (both at full speed,
# so both amortise the event loop alike); the budget is one upstream request's worth, i.e. the
# `off` figure, which is a whole proxied request. CRS itself manages ~1000 requests/s on this
# 2-core box, so its rows show the latency a real rule set adds, and a CPU/request inflated by
# an event loop that wakes for every request instead of every batch.
# Knobs: DUR [10], CONNS [16], REPS [3]. Needs wrk, nginx, apache2 + mod-security2 + CRS.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; CONNS=${CONNS:-16}; REPS=${REPS:-3}
source bench/lib.sh waf
WAFPORT=$(free_port)
bash scripts/waf-crs.sh "$W/crs" "$WAFPORT" >/dev/null 2>&1 &
PIDS+=($!)
start_origin
STUB=$(free_port)
sed "s/127.0.0.1:$ORIGIN/127.0.0.1:$STUB/; s#$W/nginx.pid#$W/stub.pid#; s#\"ok\\\\n\"#\"\"#" "$W/origin.conf" >"$W/stub.conf"
start_origin "$W/stub.conf"
{ gateway_toml; cat <<TOML
[upstream.waf]
endpoints = [{ addr = "127.0.0.1:$WAFPORT" }]
[upstream.stub]
endpoints = [{ addr = "127.0.0.1:$STUB" }]
[waf.crs]
upstream = "waf"
timeout_ms = 1000
[waf.stub]
upstream = "stub"
timeout_ms = 1000
TOML
  service_toml stub stub.test 'waf = "stub"'
  service_toml on on.test 'waf = "crs"'
  service_toml off off.test
} >"$W/ringway.toml"
start_ringway
for _ in $(seq 1 100); do curl -s -o /dev/null "127.0.0.1:$WAFPORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PROXY/items?q=walking+shoes"
run() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "Host: $1" "$URL" | wrk_summary; }  # $1: host
wrk -t1 -c"$CONNS" -d2s -H "Host: on.test" "$URL" >/dev/null   # warm-up (WAF pool, CRS workers)
printf '%-5s %-4s %10s %9s %9s %9s %12s %14s\n' round waf rps p50 p99 non2xx cpu_us/req "waf p50/p99 us"
for r in $(seq 1 "$REPS"); do
  for host in off.test stub.test on.test; do
    curl -s -o /dev/null "127.0.0.1:$ADMIN/stats/latency?reset=1"
    c0=$(cpu_ns)
    read -r n rps p50 p99 non <<<"$(run "$host")"
    c1=$(cpu_ns)
    cpu=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN{printf "%.1f", (b-a)/1000/n}')
    wafp="-"
    if [[ $host != off.test ]]; then
      wafp=$(curl -s "127.0.0.1:$ADMIN/stats/latency" | python3 -c '
import json, sys
w = json.load(sys.stdin)["apis"][sys.argv[1] + "/all"]["waf"]
print("%d/%d" % (w["p50"], w["p99"]))' "${host%%.*}")
    fi
    name=${host%%.*}; [[ $name == on ]] && name=crs
    printf '%-5s %-4s %10s %9s %9s %9s %12s %14s\n' "$r" "$name" "$rps" "$p50" "$p99" "$non" "$cpu" "$wafp"
  done
done
