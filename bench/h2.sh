#!/usr/bin/env bash
# h2.sh - HTTP/2 over TLS: ringway beside nginx (`listen ... ssl http2`), the same ECDSA P-256
# certificate, both proxying to one HTTP/1.1 nginx origin with keep-alive. Each proxy runs one
# worker pinned alone to PROXY_CPU; h2load and the origin run on LOAD_CPU. Loopback only; every
# run is bounded by its request count.
#
# 1. Load: `h2load -c 50 -m 10` (50 connections x 10 streams), 3-byte ("/") and 4 KiB ("/4k")
#    bodies, N requests per run, REPS interleaved rounds (ringway, nginx, ringway, nginx...).
#    Reported per run: req/s, proxy CPU microseconds per request (schedstat of every thread of
#    the proxy's process tree), and p50/p99 of h2load's per-request times (its --log-file; the
#    client is closed-loop, so these are service times at saturation, not open-loop latency).
# 2. Idle memory: IDLE HTTP/2 connections opened by scripts/h2-idle.py (TLS handshake, preface,
#    SETTINGS, one GET answered) and left open; reported: the proxy tree's RSS growth per
#    connection (KiB).
#
# Knobs: N [200000], REPS [3], IDLE [1000], IDLE_SETTLE [3] (seconds between the last idle
# connection opening and the RSS reading: ringway frees an idle connection's read buffer after
# [http] idle_park_ms), RINGWAY_BIN, RINGWAY_B (a second build, target ringway_b; its ratios to
# ringway are printed too), LOAD_CPU [0], PROXY_CPU [1], OUT [temp].
# Needs: openssl, nginx, h2load (nghttp2-client), python3.
# Output: a table on stdout and $OUT/raw.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}; REPS=${REPS:-3}; IDLE=${IDLE:-1000}; IDLE_SETTLE=${IDLE_SETTLE:-3}
LOAD_CPU=${LOAD_CPU:-0}; PROXY_CPU=${PROXY_CPU:-1}
source bench/sides.sh h2
make_cert
write_origin
write_nginx "ssl http2" "$NGX_TLS http2_max_requests 100000000; http2_max_concurrent_streams 128;"
write_ringway "" "[http2]
idle_timeout_ms = 300000" "$RW_TLS"
start origin "$ORIGIN" taskset -c "$LOAD_CPU" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" taskset -c "$PROXY_CPU" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start ringway "$RW" taskset -c "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
TARGETS="ringway nginx"
start_ringway_b taskset -c "$PROXY_CPU"
pct() { sort -n "$1" | awk -v q="$2" '{a[NR]=$1} END {i=int(NR*q); if (i<1) i=1; printf "%.3f", a[i]/1000}'; }

# warm-up: pools filled, code paths touched
for t in $TARGETS; do taskset -c "$LOAD_CPU" h2load -n 20000 -c 50 -m 10 "https://127.0.0.1:${PORT[$t]}/" >/dev/null 2>&1; done

printf "body\ttarget\trep\treq_per_s\tus_per_req\tp50_ms\tp99_ms\tfailed\n" >"$OUT/raw.tsv"
for r in $(seq 1 "$REPS"); do
  for body in / /4k; do
    for t in $(round_order "$r" $TARGETS); do
      log="$W/h2load.log"; rm -f "$log"
      a=$(cpu_ns "${PID[$t]}")
      res=$(taskset -c "$LOAD_CPU" h2load -n "$N" -c 50 -m 10 --log-file="$log" "https://127.0.0.1:${PORT[$t]}$body" 2>&1)
      b=$(cpu_ns "${PID[$t]}")
      rps=$(awk '/^finished in/ {gsub(/,/,""); print $4}' <<<"$res")
      failed=$(awk '/^requests:/ {print $8}' <<<"$res")
      us=$(awk -v d=$((b - a)) -v n="$N" 'BEGIN{printf "%.2f", d/1000/n}')
      cut -f3 "$log" >"$W/times"
      p50=$(pct "$W/times" 0.50); p99=$(pct "$W/times" 0.99)
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$body" "$t" "$r" "$rps" "$us" "$p50" "$p99" "$failed" | tee -a "$OUT/raw.tsv" >&2
    done
  done
done

printf "target\tidle_connections\trss_growth_kib\tkib_per_conn\n" >"$OUT/idle.tsv"
for t in $TARGETS; do
  before=$(rss_kib "${PID[$t]}")
  python3 scripts/h2-idle.py 127.0.0.1 "${PORT[$t]}" "$IDLE" "$W/idle.$t" &
  holder=$!; PIDS+=("$holder")
  for _ in $(seq 1 300); do [[ -e "$W/idle.$t" ]] && break; sleep 0.1; done
  sleep "$IDLE_SETTLE"
  after=$(rss_kib "${PID[$t]}")
  kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
  printf "%s\t%s\t%s\t%s\n" "$t" "$IDLE" $((after - before)) "$(awk -v d=$((after - before)) -v n="$IDLE" 'BEGIN{printf "%.1f", d/n}')" | tee -a "$OUT/idle.tsv" >&2
done

echo
echo "== h2load -c 50 -m 10 over TLS, $N requests per run, medians of $REPS rounds"
printf "%-6s %-8s %10s %10s %8s %8s\n" body target req/s us/req p50_ms p99_ms
for body in / /4k; do
  for t in $TARGETS; do
    awk -F'\t' -v b="$body" -v t="$t" '$1==b && $2==t {print $4, $5, $6, $7}' "$OUT/raw.tsv" >"$W/sel"
    med() { cut -d' ' -f"$1" "$W/sel" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
    printf "%-6s %-8s %10s %10s %8s %8s\n" "$body" "$t" "$(med 1)" "$(med 2)" "$(med 3)" "$(med 4)"
  done
done
echo "== ringway / nginx, paired by round (median of the rounds' ratios; this box drifts between rounds)"
for body in / /4k; do
  ratios() { awk -F'\t' -v b="$body" -v col="$1" -v x="${2:-ringway}" -v y="${3:-nginx}" '$1==b {v[$2,$3]=$col; if ($3>n) n=$3}
    END {for (r=1; r<=n; r++) printf "%.3f\n", v[x,r]/v[y,r]}' "$OUT/raw.tsv" | sort -n \
    | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  printf "%-6s cpu/request %s   p99 %s\n" "$body" "$(ratios 5)" "$(ratios 7)"
  [[ -z "${RINGWAY_B:-}" ]] || printf "%-6s ringway_b / ringway: cpu/request %s   p99 %s\n" "$body" \
    "$(ratios 5 ringway_b ringway)" "$(ratios 7 ringway_b ringway)"
done
echo "== idle HTTP/2 connections"
column -t "$OUT/idle.tsv"
echo "raw: $OUT"
