#!/usr/bin/env bash
# overload.sh - closed-loop overload beside nginx and HAProxy: `wrk -t1 -c CONNS` (default 2000
# keep-alive connections, far past what one core serves at a flat latency) against each proxy,
# one worker / thread pinned alone to PROXY_CPU, the origin and wrk on LOAD_CPU. During each run
# bench/overload_probe.py opens a fresh connection every 100 ms (the new-client experience:
# connect to last byte) and samples the listening socket's accept queue. Interleaved REPS
# rounds; reported medians of: req/s, wrk p50/p99, proxy CPU per request, probe p50/max, accept
# queue mean/max. Upstream pools: 4096 idle connections for nginx and ringway (HAProxy
# shares its idle connections without a cap); a 3 s warm-up at full width first. Loopback only; every run is bounded by DUR.
# Knobs: DUR [10], REPS [3], CONNS [2000], URLPATH [/], TARGETS ["nginx haproxy ringway"],
#        RINGWAY_BIN, RINGWAY_B (a second binary: target ringway_b, for A/B), HTTP_EXTRA (lines for ringway's [http]), LOAD_CPU [0], PROXY_CPU [1], OUT.
# Needs nginx, haproxy, wrk, python3, ss (iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; REPS=${REPS:-3}; CONNS=${CONNS:-2000}; URLPATH=${URLPATH:-/}
TARGETS=${TARGETS:-"nginx haproxy ringway"}; LOAD_CPU=${LOAD_CPU:-0}; PROXY_CPU=${PROXY_CPU:-1}
source bench/sides.sh overload
write_origin; write_nginx; write_haproxy; write_ringway "${HTTP_EXTRA:-}"
# every proxy keeps up to 4096 idle upstream connections (CONNS of them are busy at once), so a
# run measures the steady state, not the upstream pool growing
sed -i 's/keepalive 1024;/keepalive 4096;/' "$W/nginx.conf"
sed -i 's/^endpoints = .*/&\npool_max_idle_per_endpoint = 4096/' "$W/ringway.toml"
start origin "$ORIGIN" taskset -c "$LOAD_CPU" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" taskset -c "$PROXY_CPU" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" taskset -c "$PROXY_CPU" haproxy -db -f "$W/haproxy.cfg"
start ringway "$RW" taskset -c "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
start_ringway_b taskset -c "$PROXY_CPU"
# warm-up at full width: upstream pools grow to CONNS connections before anything is measured
for t in $TARGETS; do taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:${PORT[$t]}$URLPATH" >/dev/null; done

printf "target\trep\treq_per_s\tp50_ms\tp99_ms\tus_per_req\tprobe_p50_ms\tprobe_max_ms\tqueue_mean\tqueue_max\terrors\n" >"$OUT/raw.tsv"
for r in $(seq 1 "$REPS"); do
  for t in $(round_order "$r" $TARGETS); do
    a=$(cpu_ns "${PID[$t]}")
    taskset -c "$LOAD_CPU" python3 bench/overload_probe.py 127.0.0.1 "${PORT[$t]}" "$((DUR - 1))" 0.1 >"$W/probe.json" &
    probe=$!
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:${PORT[$t]}$URLPATH" >"$W/wrk.txt"
    b=$(cpu_ns "${PID[$t]}")
    wait "$probe"
    python3 - "$W/wrk.txt" "$W/probe.json" "$t" "$r" $((b - a)) <<'PY' | tee -a "$OUT/raw.tsv" >&2
import json, re, sys
w = open(sys.argv[1]).read()
def ms(tag):
    m = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)\s*$" % tag, w, re.M)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")
n = int(re.search(r"(\d+) requests in", w).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", w).group(1))
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", w))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
errs += int(non2xx.group(1)) if non2xx else 0
p = json.load(open(sys.argv[2]))
pr, q = p["probe_ms"], p["queue"] or [0]
print("\t".join([sys.argv[3], sys.argv[4], "%.0f" % rps, "%.2f" % ms("50%"), "%.2f" % ms("99%"),
                 "%.2f" % (int(sys.argv[5]) / 1e3 / max(n, 1)), "%.2f" % pr[len(pr) // 2], "%.2f" % pr[-1],
                 "%.1f" % (sum(q) / len(q)), "%d" % max(q), "%d" % errs]))
PY
  done
done

echo
echo "== overload: wrk -t1 -c$CONNS ${DUR}s, probe every 100 ms; medians of $REPS rounds"
printf "%-8s %9s %8s %8s %8s %10s %10s %8s %8s\n" target req/s p50_ms p99_ms us/req probe_p50 probe_max q_mean q_max
for t in $TARGETS; do
  col() { awk -F'\t' -v t="$t" -v c="$1" '$1==t {print $c}' "$OUT/raw.tsv" | med; }
  printf "%-8s %9s %8s %8s %8s %10s %10s %8s %8s\n" "$t" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)" "$(col 8)" "$(col 9)" "$(col 10)"
done
echo "raw: $OUT"
