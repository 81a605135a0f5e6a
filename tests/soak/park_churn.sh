#!/usr/bin/env bash
# Parking churn soak (not part of cargo test): CONNS keep-alive connections that send their next
# request just before, at and just after the 1 s park delay (so connections park and come back
# all the time, sometimes while a request is arriving), alongside `wrk -c50` on the same
# listener. Checks every churn response is a complete 200, wrk saw no errors, and once the
# clients are gone the parked and open connection gauges return to 0. Needs wrk (Debian
# package; installed if missing), python3 and curl.
# Knobs: CONNS [1500], DUR [20] seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-1500}; DUR=${DUR:-20}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
source scripts/mock-gateway.sh park
wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$PORT/" >"$W/wrk.txt" 2>&1 & WRK=$!
EXTRA_PIDS+=("$WRK")
gauges() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^ringway_connections_(parked|active)\{/ { split($1, a, "{"); s[a[1]] += $2 } END { printf "active %d parked %d\n", s["ringway_connections_active"], s["ringway_connections_parked"] }'; }
( sleep $((DUR / 2)); echo "mid-run: $(gauges)" >"$W/mid.txt" ) & EXTRA_PIDS+=("$!")
status=0
python3 tests/soak/park_churn.py "$PORT" "$CONNS" "$DUR" || status=1
wait "$WRK" || true
echo "== $CONNS churning connections for $DUR s beside wrk -c50"
cat "$W/mid.txt" 2>/dev/null || true
grep -E "Requests/sec|Non-2xx|Socket errors" "$W/wrk.txt" || true
grep -qE "Non-2xx|Socket errors" "$W/wrk.txt" && status=1
sleep 2
after=$(gauges)
echo "after the clients left: $after"
[[ "$after" == "active 0 parked 0" ]] || status=1
exit $status
