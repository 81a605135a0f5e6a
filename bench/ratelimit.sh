#!/usr/bin/env bash
# Rate-limit accuracy: offers 2x, 5x and 10x the configured QPS for DUR seconds through ringway
# (2 workers) to an nginx origin, and reports the *admitted* QPS in every 1 s window, read from
# ringway's own counters (GET /metrics, polled each second), against the configured caps:
#   instance.max_qps = RATE, service "capped" max_qps = RATE/2, its API "slow" max_qps = RATE/4.
# A last round offers load on 3 unpaced connections, so SO_REUSEPORT typically puts most of it on
# one worker: the per-worker connection split is printed to show the skew.
# Offered load is paced with wrk's Lua delay(): each connection waits 10 ms between requests.
# Knobs: RATE [2000], DUR [10]. Needs wrk, nginx, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-2000}; DUR=${DUR:-10}
for b in wrk nginx curl python3; do command -v $b >/dev/null || { echo "missing $b"; exit 1; }; done
source bench/lib.sh rl
cat >"$W/ringway.toml" <<TOML
[instance]
workers = 2
max_qps = $RATE
[admin]
listen = "127.0.0.1:$ADMIN"
[[listener]]
listen = "127.0.0.1:$PROXY"
[upstream.origin]
endpoints = [{ addr = "127.0.0.1:$ORIGIN" }]
[http]
keepalive_requests = 100000000
[service.open]
[[service.open.api]]
name = "all"
path = "/*"
upstream = "origin"
[service.capped]
base_path = "/capped"
max_qps = $((RATE / 2))
[[service.capped.api]]
name = "slow"
path = "/slow"
upstream = "origin"
max_qps = $((RATE / 4))
[[service.capped.api]]
name = "rest"
path = "/*"
upstream = "origin"
TOML
nginx -p "$W" -c "$W/origin.conf" -e "$W/error.log" & PIDS+=($!)
RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
cat >"$W/paced.lua" <<'LUA'
function delay() return 10 end
LUA
cat >"$W/poll.py" <<'PY'
import re, sys, time, urllib.request
admin, dur, label, cap, select = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
pat = re.compile(r'^ringway_requests_total\{service="([^"]*)",api="([^"]*)",class="([^"]*)"\} (\d+)', re.M)
def sample():
    text = urllib.request.urlopen(f"http://{admin}/metrics").read().decode()
    ok = refused = 0
    for svc, api, cls, n in pat.findall(text):
        if select == "instance" or f"{svc}/{api}" == select or (select.endswith("/*") and svc == select[:-2]):
            if cls == "2xx": ok += int(n)
            if cls == "4xx": refused += int(n)
    conns = re.findall(r'^ringway_connections_total\{worker="(\d+)"\} (\d+)', text, re.M)
    return time.monotonic(), ok, refused, conns
prev = sample(); errs = []
rows = []
for i in range(dur):
    time.sleep(1.0 - (time.monotonic() - prev[0]) % 1.0)
    cur = sample()
    dt = cur[0] - prev[0]
    adm, ref = (cur[1] - prev[1]) / dt, (cur[2] - prev[2]) / dt
    rows.append((adm, ref)); prev = cur
steady = rows[1:]
worst = max(abs(a - cap) / cap * 100 for a, _ in steady)
print(f"{label:<34} cap {cap:>6}/s  admitted/s per window: " + " ".join(f"{a:.0f}" for a, _ in rows))
print(f"{'':<34} offered ≈ {sum(a + r for a, r in steady) / len(steady):.0f}/s; worst window after the first: {worst:.2f}% off; workers' connections so far: {dict(cur[3])}")
PY
run() { # label cap select conns path lua
  local label=$1 cap=$2 select=$3 conns=$4 path=$5 lua=$6
  python3 "$W/poll.py" "127.0.0.1:$ADMIN" "$DUR" "$label" "$cap" "$select" &
  local poller=$!
  wrk -t2 -c"$conns" -d"$((DUR + 1))s" ${lua:+-s "$W/paced.lua"} "http://127.0.0.1:$PROXY$path" >/dev/null 2>&1 || true
  wait $poller
}
echo "== rate-limit accuracy, RATE=$RATE, ${DUR}s per round, $(nproc) cores, 2 workers"
for f in 2 5 10; do
  conns=$(( RATE * f / 100 ))   # each paced connection offers ~100 req/s
  run "instance cap, ${f}x offered" "$RATE" instance "$conns" / lua
done
for f in 2 5 10; do
  conns=$(( RATE / 4 * f / 100 )); [[ $conns -lt 1 ]] && conns=1
  run "API cap (capped/slow), ${f}x offered" "$((RATE / 4))" "capped/slow" "$conns" /capped/slow lua
done
for f in 2 5 10; do
  conns=$(( RATE / 2 * f / 100 ))
  run "service cap (capped/*), ${f}x offered" "$((RATE / 2))" "capped/*" "$conns" /capped/other lua
done
run "instance cap, 3 unpaced connections" "$RATE" instance 3 / ""
