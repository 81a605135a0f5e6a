#!/usr/bin/env bash
# openloop.sh - open-loop latency (no coordinated omission) at fixed request rates: ringway beside
# nginx and HAProxy, each one worker / thread pinned alone to PROXY_CPU, proxying to one nginx
# origin with keep-alive; the load generator (oha, with --latency-correction: a request's
# latency counts from when it was due, not when a busy client got round to sending it) and the
# origin on LOAD_CPU. Loopback only; every run is bounded by DUR.
#
# 1. Saturation: `wrk -t1 -c50` against nginx for SAT_DUR seconds gives nginx's req/s (S).
# 2. For each rate in RATES (percent of S), REPS interleaved rounds over the targets:
#    `oha -z DUR -q RATE -c 50 --latency-correction`; reported: achieved req/s, p50, p99,
#    p99.9 (ms), success rate, and the proxy's CPU per request (schedstat of its process tree).
#
# Knobs: DUR [10], SAT_DUR [5], REPS [3], RATES ["30 60 90"], TARGETS ["nginx haproxy ringway"],
#        URLPATH [/], RINGWAY_BIN, HTTP_EXTRA (lines for ringway's [http]), RINGWAY_B (+
#        RINGWAY_B_DRIVER) a second ringway as target ringway_b (bench/sides.sh), LOAD_CPU [0],
#        PROXY_CPU [1], OUT [temp dir].
# Needs: nginx, haproxy, wrk, oha (`cargo install oha` when missing), python3.
# Output: $OUT/raw.tsv, a table of medians on stdout and the ringway / nginx ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; SAT_DUR=${SAT_DUR:-5}; REPS=${REPS:-3}; RATES=${RATES:-"30 60 90"}
TARGETS=${TARGETS:-"nginx haproxy ringway"}; URLPATH=${URLPATH:-/}
LOAD_CPU=${LOAD_CPU:-0}; PROXY_CPU=${PROXY_CPU:-1}
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
if [[ ! -x "$OHA" ]]; then
  echo "== installing oha (crates.io) for open-loop load" >&2
  cargo install oha --locked --quiet
fi
source bench/sides.sh openloop
write_origin; write_nginx; write_haproxy; write_ringway "${HTTP_EXTRA:-}"
start origin "$ORIGIN" taskset -c "$LOAD_CPU" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" taskset -c "$PROXY_CPU" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" taskset -c "$PROXY_CPU" haproxy -db -f "$W/haproxy.cfg"
start ringway "$RW" taskset -c "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
start_ringway_b taskset -c "$PROXY_CPU"

for t in $TARGETS; do taskset -c "$LOAD_CPU" wrk -t1 -c50 -d2s "http://127.0.0.1:${PORT[$t]}$URLPATH" >/dev/null; done
SAT=$(taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"${SAT_DUR}s" "http://127.0.0.1:${PORT[nginx]}$URLPATH" | awk '/Requests\/sec/ {printf "%.0f", $2}')
echo "== nginx saturation (wrk -t1 -c50, ${SAT_DUR}s): $SAT req/s" >&2

printf "rate_pct\trate\ttarget\trep\treq_per_s\tp50_ms\tp99_ms\tp999_ms\tsuccess\tus_per_req\n" >"$OUT/raw.tsv"
for pct in $RATES; do
  rate=$((SAT * pct / 100))
  for r in $(seq 1 "$REPS"); do
    for t in $(round_order "$r" $TARGETS); do
      a=$(cpu_ns "${PID[$t]}")
      taskset -c "$LOAD_CPU" "$OHA" -z "${DUR}s" -q "$rate" -c 50 --latency-correction --no-tui --output-format json \
        "http://127.0.0.1:${PORT[$t]}$URLPATH" >"$W/oha.json" 2>/dev/null
      b=$(cpu_ns "${PID[$t]}")
      python3 - "$W/oha.json" "$pct" "$rate" "$t" "$r" $((b - a)) <<'PY' | tee -a "$OUT/raw.tsv" >&2
import json, sys
d = json.load(open(sys.argv[1]))
p, s = d["latencyPercentiles"], d["summary"]
n = sum(d["statusCodeDistribution"].values()) or 1
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], "%.0f" % s["requestsPerSec"],
                 "%.3f" % (p["p50"] * 1e3), "%.3f" % (p["p99"] * 1e3), "%.3f" % (p["p99.9"] * 1e3),
                 "%.4f" % s["successRate"], "%.2f" % (int(sys.argv[6]) / 1e3 / n)]))
PY
    done
  done
done

echo
echo "== open loop (oha --latency-correction, -c 50, ${DUR}s per run), medians of $REPS; nginx saturation $SAT req/s"
printf "%-5s %-8s %9s %8s %8s %9s %8s\n" rate target req/s p50_ms p99_ms p99.9_ms us/req
for pct in $RATES; do
  for t in $TARGETS; do
    col() { awk -F'\t' -v p="$pct" -v t="$t" -v c="$1" '$1==p && $3==t {print $c}' "$OUT/raw.tsv" | med; }
    printf "%-5s %-8s %9s %8s %8s %9s %8s\n" "$pct%" "$t" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)" "$(col 10)"
  done
done
echo "== ringway / nginx (median of per-round ratios)"
for pct in $RATES; do
  ratio() { awk -F'\t' -v p="$pct" -v c="$1" '$1==p {v[$3,$4]=$c; if ($4>n) n=$4}
    END {for (r=1; r<=n; r++) if (v["nginx",r] > 0) printf "%.3f\n", v["ringway",r]/v["nginx",r]}' "$OUT/raw.tsv" | med; }
  printf "%-5s p99 %s  p99.9 %s  cpu/req %s\n" "$pct%" "$(ratio 7)" "$(ratio 8)" "$(ratio 10)"
done
echo "raw: $OUT"
