#!/usr/bin/env bash
# cluster.sh - one cap for three nodes: redis-server, three ringway processes (same config but
# `node`, workers = 1 each), a service capped at CAP/s with scope = "cluster", wrk on each node
# (70% of the connections on gw-0; every request beyond the cap gets a fast 429, so the offered
# rate is many times the cap), and a Python origin counting arrivals per 1 s window.
#   run A: DUR seconds; gw-2 is killed (SIGKILL) at DUR/2.
#   run B: DUR seconds; Redis is stopped at DUR/3 and restarted at 2*DUR/3 (on_redis_error =
#          local_share: the two nodes enforce CAP/2 each meanwhile).
#   run C: CPU per request of one node, its cap scope "instance" vs "cluster", same load.
# Prints each run's per-window table (window, arrivals, deviation from the cap).
# Knobs: CAP [3000], DUR [12]. Needs wrk, redis-server, python3. Loopback only, bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CAP:-3000}; DUR=${DUR:-12}
source bench/lib.sh cluster
REDIS=$(free_port)
redis_up() { redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null & RP=$!; PIDS+=($RP); sleep 0.3; }
redis_up
node_conf() { # $1 node, $2 proxy port, $3 admin port, $4 scope
  cat >"$W/$1.toml" <<TOML
[instance]
workers = 1
[admin]
listen = "127.0.0.1:$3"
[[listener]]
listen = "127.0.0.1:$2"
[http]
keepalive_requests = 100000000
[cluster]
redis = "redis://127.0.0.1:$REDIS/0"
node = "$1"
[upstream.o]
endpoints = [{ addr = "127.0.0.1:$ORIGIN" }]
[service.shop]
max_qps = $CAP
scope = "$4"
[[service.shop.api]]
name = "all"
path = "/*"
upstream = "o"
TOML
}
declare -A PORT ADM PID
for n in gw-0 gw-1 gw-2; do PORT[$n]=$(free_port); ADM[$n]=$(free_port); node_conf "$n" "${PORT[$n]}" "${ADM[$n]}" cluster; done
start_node() { RUST_LOG=warn target/release/ringway -c "$W/$1.toml" & PID[$1]=$!; PIDS+=("${PID[$1]}"); }
table() { awk -v c="$CAP" 'NR>1 {w[NR-1]=$2} END { for (i = 1; i < NR-1; i++) printf "  %2d: %5d (%+.1f%%)\n", i, w[i], (w[i]-c)/c*100 }' "$1"; }
load() { # $1 seconds; wrk on every live node, 70% of the connections on gw-0
  wrk -t1 -c14 -d"${1}s" "http://127.0.0.1:${PORT[gw-0]}/" >/dev/null 2>&1 &
  wrk -t1 -c3 -d"${1}s" "http://127.0.0.1:${PORT[gw-1]}/" >/dev/null 2>&1 &
  wrk -t1 -c3 -d"${1}s" "http://127.0.0.1:${PORT[gw-2]}/" >/dev/null 2>&1 &
}
for n in gw-0 gw-1 gw-2; do start_node "$n"; done
sleep 1.5
echo "== A: 3 nodes, cap $CAP/s, gw-2 killed at $((DUR / 2)) s"
python3 bench/origin_counter.py "$ORIGIN" "$((DUR + 1))" "$W/a.txt" & sink=$!
sleep 0.3; load "$DUR"
sleep "$((DUR / 2))"; kill -9 "${PID[gw-2]}"
wait "$sink"; table "$W/a.txt"
sleep 1
echo "== B: gw-0 and gw-1, Redis stopped at $((DUR / 3)) s, restarted at $((2 * DUR / 3)) s (local_share)"
python3 bench/origin_counter.py "$ORIGIN" "$((DUR + 1))" "$W/b.txt" & sink=$!
sleep 0.3; load "$DUR"
sleep "$((DUR / 3))"; kill "$RP"; wait "$RP" 2>/dev/null || true
sleep "$((DUR / 3))"; redis_up
wait "$sink"; table "$W/b.txt"
curl -s "127.0.0.1:${ADM[gw-0]}/metrics" | grep -E '^ringway_cluster_(redis_errors|nodes|mode)' || true
kill "${PID[gw-0]}" "${PID[gw-1]}" 2>/dev/null || true
sleep 1
echo "== C: one node, CPU per request (all threads, schedstat): scope instance vs cluster"
start_origin
for scope in instance cluster instance cluster; do
  node_conf solo "${PORT[gw-0]}" "${ADM[gw-0]}" "$scope"
  sed -i "s/^max_qps = .*/max_qps = 1000000/" "$W/solo.toml"
  start_node solo; RW=${PID[solo]}; sleep 1.5
  c0=$(cpu_ns)
  read -r n rps p50 p99 non <<<"$(wrk -t1 -c50 -d"$((DUR / 2))s" --latency "http://127.0.0.1:${PORT[gw-0]}/" | wrk_summary)"
  c1=$(cpu_ns)
  printf '  %-8s rps=%s p99=%s cpu_us/req=%s\n' "$scope" "$rps" "$p99" "$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN{printf "%.2f", (b-a)/1000/n}')"
  kill "$RW"; wait "$RW" 2>/dev/null || true; sleep 0.5
done
