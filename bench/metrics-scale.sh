#!/usr/bin/env bash
# Metrics at scale: RSS, start-up time and admin scrape times with a config of APIS APIs and
# UPSTREAMS upstreams (scripts/gen-large-config.py), WORKERS workers, traffic to every API.
# Prints: start-up ms, RSS idle / after traffic to every API / after scrapes, and the time of
# /metrics and /stats/latency with the workers saturated by wrk. Knobs: APIS [2000],
# UPSTREAMS [500], WORKERS [2], DUR [10], RINGWAY_BIN [target/release/ringway].
set -euo pipefail
cd "$(dirname "$0")/.."
APIS=${APIS:-2000}; UPSTREAMS=${UPSTREAMS:-500}; WORKERS=${WORKERS:-2}; DUR=${DUR:-10}
for b in wrk nginx curl; do command -v $b >/dev/null || { echo "missing $b (apt-get install wrk nginx-light curl)"; exit 1; }; done
source bench/lib.sh metrics-scale
nginx -p "$W" -c "$W/origin.conf" -e "$W/error.log" & PIDS+=($!)
python3 scripts/gen-large-config.py --apis "$APIS" --upstreams "$UPSTREAMS" --origin "127.0.0.1:$ORIGIN" \
  --listen "127.0.0.1:$PROXY" --admin "127.0.0.1:$ADMIN" --workers "$WORKERS" >"$W/big.toml"
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
t0=$(date +%s%N)
BIN=${RINGWAY_BIN:-target/release/ringway}
RUST_LOG=warn "$BIN" -c "$W/big.toml" & RW=$!; PIDS+=($RW)
until curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null; do sleep 0.01; done
echo "start-up to /healthz: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
sleep 1; echo "RSS idle: $(rss $RW)"
# every API, several times (a Lua script walks the paths)
cat >"$W/walk.lua" <<LUA
local i = 0
local per = math.ceil($APIS / 50)
request = function()
  local api = i % $APIS
  i = i + 1
  return wrk.format("GET", "/s" .. math.floor(api / per) .. "/a" .. api)
end
LUA
wrk -t1 -c50 -d5s -s "$W/walk.lua" "http://127.0.0.1:$PROXY" | grep -E "Requests/sec|Non-2xx" || true
echo "RSS after traffic to every API: $(rss $RW)"
for i in 1 2 3; do
  curl -s -o /dev/null -w "idle scrape /metrics: %{http_code} in %{time_total}s\n" "http://127.0.0.1:$ADMIN/metrics" || true
  curl -s -o /dev/null -w "idle scrape /stats/latency: %{http_code} in %{time_total}s\n" "http://127.0.0.1:$ADMIN/stats/latency" || true
done
echo "RSS after 3 scrapes of each: $(rss $RW)"
echo "/metrics size: $(curl -s "http://127.0.0.1:$ADMIN/metrics" | wc -c) bytes"
wrk -t1 -c100 -d"${DUR}s" -s "$W/walk.lua" "http://127.0.0.1:$PROXY" >"$W/wrk.txt" &
WRK=$!
sleep 2
for ep in metrics stats/latency metrics stats/latency metrics stats/latency; do
  curl -s -o "$W/scrape.out" -w "scrape /$ep under load: %{http_code} in %{time_total}s\n" "http://127.0.0.1:$ADMIN/$ep" || true
  grep -q '"workers_missing":\[\]' "$W/scrape.out" 2>/dev/null && echo "  (all workers reported)" || true
done
wait $WRK; grep -E "Requests/sec" "$W/wrk.txt"
echo "RSS at the end: $(rss $RW)"
