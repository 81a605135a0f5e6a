#!/usr/bin/env bash
# Slowloris soak (not part of cargo test): 1000 connections that send their headers one line
# every few seconds, against ringway with the default 10 s header deadline, while a probe sends a
# normal request every 0.5 s. Reports when the slow connections were closed and how many probes
# succeeded. Needs slowhttptest (Debian package; installed if missing) and curl.
# Knobs: CONNS [1000], DUR [40] seconds, INTERVAL [5] seconds between slow header lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-1000}; DUR=${DUR:-40}; INTERVAL=${INTERVAL:-5}
command -v slowhttptest >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slowhttptest >/dev/null; }
source scripts/mock-gateway.sh slow
( ok=0; fail=0; slow=0; end=$((SECONDS + DUR))
  while (( SECONDS < end )); do
    t=$(curl -s -o /dev/null -m 2 -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT/probe" || echo "000 2")
    read -r code secs <<<"$t"
    if [[ $code == 200 ]]; then ok=$((ok + 1)); else fail=$((fail + 1)); fi
    awk -v s="$secs" 'BEGIN { exit !(s > 0.1) }' && slow=$((slow + 1))
    sleep 0.5
  done
  echo "probe: $ok succeeded, $fail failed, $slow slower than 100 ms" >"$W/probe.txt" ) & PROBE=$!
EXTRA_PIDS+=("$PROBE")
slowhttptest -H -c "$CONNS" -r 500 -i "$INTERVAL" -l "$DUR" -s 8192 -t GET -p 3 -x 24 \
  -u "http://127.0.0.1:$PORT/" -g -o "$W/slow" >"$W/slowhttptest.log" 2>&1 || true
wait $PROBE || true
echo "== slowhttptest -H -c $CONNS -i $INTERVAL -l $DUR (header deadline 10 s)"
# CSV columns: Seconds, Closed, Pending, Connected, Service Available
echo "  t(s) closed pending connected"
awk -F, 'NR > 1 { printf "  %4s %6s %7s %9s\n", $1, $2, $3, $4 }' "$W/slow.csv"
sed 's/\x1b\[[0-9;]*m//g' "$W/slowhttptest.log" | grep -E "Exit status" || true
cat "$W/probe.txt"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^ringway_requests_total\{service="",api="",class="4xx"\}'
