#!/usr/bin/env bash
# egress.sh - accuracy of the egress bandwidth cap: wrk uploads (POST, BODY_BYTES each, CONNS
# connections, both workers) through ringway capped at CAP bytes/s to a Python origin that counts
# the body bytes it receives per whole second (bench/origin_counter.py --bytes). Prints the offered rate
# without the cap first (same load, uncapped, DUR/2 s), then each 1 s window under the cap and its
# deviation from the cap. The first and last windows are partial and left out.
# Knobs: CAP [10000000], DUR [10], CONNS [8], BODY_BYTES [262144]. Needs wrk, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
CAP=${CAP:-10000000}; DUR=${DUR:-10}; CONNS=${CONNS:-8}; BODY_BYTES=${BODY_BYTES:-262144}
source bench/lib.sh egress
cat >"$W/post.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", $BODY_BYTES)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
config() { # $1: extra [instance] lines
  { gateway_toml "$1"; service_toml s "" "" "max_body_bytes = 0"; } >"$W/ringway.toml"
}
measure() { # $1: seconds, $2: output file
  python3 bench/origin_counter.py --bytes "$ORIGIN" "$(($1 + 2))" "$2" &
  local sink=$!
  sleep 0.5
  wrk -t2 -c"$CONNS" -d"${1}s" -s "$W/post.lua" "http://127.0.0.1:$PROXY/up" >/dev/null
  wait "$sink"
}
config ""
start_ringway
measure $((DUR / 2)) "$W/free.txt"
kill "$RW"; wait "$RW" 2>/dev/null || true
awk 'NR>1 {n++; t+=$2; last=$2} END {printf "uncapped: offered %.1f MB/s (mean of %d whole windows)\n", (t-last)/(n-1)/1e6, n-1}' "$W/free.txt"
config "egress_bandwidth_bytes_per_s = $CAP"
start_ringway
measure "$DUR" "$W/capped.txt"
echo "capped at $(awk -v c="$CAP" 'BEGIN{printf "%.1f", c/1e6}') MB/s, per 1 s window at the origin:"
awk -v c="$CAP" 'NR>1 {w[NR]=$2} END {
  for (i = 2; i < NR; i++) { d = (w[i]-c)/c*100; printf "  %2d: %.3f MB/s (%+.1f%%)\n", i-1, w[i]/1e6, d
    if (d > mx || i == 2) mx = d; if (d < mn || i == 2) mn = d; s += w[i]; n++ }
  printf "windows %d, mean %.3f MB/s (%+.1f%%), range %+.1f%% .. %+.1f%%\n", n, s/n/1e6, (s/n-c)/c*100, mn, mx }' "$W/capped.txt"
curl -s "127.0.0.1:$ADMIN/metrics" | grep -E '^ringway_egress' || true
