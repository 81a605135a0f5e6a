#!/usr/bin/env bash
# tls.sh - TLS handshake cost and idle-connection memory: ringway beside nginx and HAProxy, all
# with the same ECDSA P-256 certificate, each proxy pinned alone to PROXY_CPU (one worker /
# thread), the client and the plain-HTTP origin on LOAD_CPU. Loopback only; every run is bounded.
#
# 1. Handshakes: `openssl s_time -new` (a full handshake per connection) and `-reuse` (resumed),
#    each connection fetching "/" (HTTP/1.0, so it closes) through the proxy to the origin.
#    Reported: proxy CPU microseconds per connection (process accounting of the proxy's tree)
#    and the handshakes per second one proxy core would sustain at that cost (1e6 / us). The
#    client is single-threaded and does crypto too, so the offered rate is client-bound; the
#    CPU per handshake is the comparable figure.
# 2. Idle memory: IDLE connections (default "1000 10000") opened with a finished handshake and
#    left idle; reported: the proxy tree's RSS growth per connection (KiB). This machine caps
#    open files near 20 000 per process and HAProxy reserves two per connection, so the large
#    cell is 9000 connections (HAProxy would refuse to start with maxconn 10000).
#
# Setup (origin, the three proxies, ports, clean-up): bench/sides.sh, with the certificate added.
# Knobs: DUR (s per s_time run) [5], REPS [3], IDLE ["1000 9000"], RINGWAY_BIN, LOAD_CPU [0],
#        PROXY_CPU [1], OUT [temp dir]. Needs: openssl, nginx, haproxy, python3.
# Output: a table on stdout and $OUT/raw.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}; REPS=${REPS:-3}; IDLE=${IDLE:-"1000 9000"}
LOAD_CPU=${LOAD_CPU:-0}; PROXY_CPU=${PROXY_CPU:-1}
source bench/sides.sh tls
make_cert
write_origin
write_nginx ssl "$NGX_TLS ssl_session_cache shared:SSL:10m; ssl_session_tickets on;"
write_haproxy; haproxy_tls
write_ringway "" "" "$RW_TLS"
start origin "$ORIGIN" taskset -c "$LOAD_CPU" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" taskset -c "$PROXY_CPU" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" taskset -c "$PROXY_CPU" haproxy -db -f "$W/haproxy.cfg"
start ringway "$RW" taskset -c "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
TARGETS="nginx haproxy ringway"
HZ=$(getconf CLK_TCK)
ticks() { local t=0 p v; for p in "$1" $(pgrep -P "$1" || true); do v=$(awk '{sub(/.*\) /,""); print $12+$13}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t+v)); done; echo $t; }
# (VmRSS, as §11 measured; sides.sh's rss_kib also subtracts lazily freed pages)
vmrss_kib() { local t=0 p v; for p in "$1" $(pgrep -P "$1" || true); do v=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0); t=$((t+v)); done; echo $t; }

printf "kind\ttarget\trep\tconnections\tus_per_conn\tper_core_per_s\n" >"$OUT/raw.tsv"
for r in $(seq 1 "$REPS"); do
  for mode in new reuse; do
    for t in $(round_order "$r" $TARGETS); do
      # the proxy's process tree: nginx master + worker, else the process itself (taskset execs)
      a=$(ticks "${PID[$t]}")
      n=$(taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:${PORT[$t]}" -"$mode" -www / -time "$DUR" 2>/dev/null \
        | awk '/connections in .* real seconds/{print $1; exit}')
      b=$(ticks "${PID[$t]}")
      us=$(awk -v d=$((b - a)) -v hz="$HZ" -v n="${n:-0}" 'BEGIN{ if (n>0) printf "%.1f", d/hz*1e6/n; else print "nan" }')
      per=$(awk -v us="$us" 'BEGIN{ if (us+0>0) printf "%.0f", 1e6/us; else print "nan" }')
      printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$mode" "$t" "$r" "${n:-0}" "$us" "$per" | tee -a "$OUT/raw.tsv" >&2
    done
  done
done

# idle connections: handshake done, then silent; RSS growth of the proxy tree per connection
cat >"$W/idle.py" <<'EOF'
import socket, ssl, sys, time
port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(ctx.wrap_socket(s, server_hostname="localhost"))
print("open", flush=True)
time.sleep(hold)
EOF
for n in $IDLE; do
  for t in $TARGETS; do
    before=$(vmrss_kib "${PID[$t]}")
    taskset -c "$LOAD_CPU" python3 "$W/idle.py" "${PORT[$t]}" "$n" 4 >"$W/idle.out" &
    ip=$!
    for _ in $(seq 1 600); do grep -q open "$W/idle.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    after=$(vmrss_kib "${PID[$t]}")
    wait "$ip" || true
    per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN{ printf "%.1f", (a-b)/n }')
    printf "idle\t%s\t1\t%s\t%s KiB/conn\t-\n" "$t" "$n" "$per" | tee -a "$OUT/raw.tsv" >&2
    sleep 2
  done
done

echo "== medians (us_per_conn: proxy CPU per connection; per_core_per_s = 1e6 / us) -> $OUT"
python3 - "$OUT/raw.tsv" <<'PYEOF'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]), delimiter="\t") if r["kind"] != "idle"]
for kind in ("new", "reuse"):
    for t in ("nginx", "haproxy", "ringway"):
        v = [float(r["us_per_conn"]) for r in rows if r["kind"] == kind and r["target"] == t and r["us_per_conn"] != "nan"]
        if v:
            m = statistics.median(v)
            print(f"{kind:6} {t:8} {m:7.1f} us/conn  {1e6 / m:6.0f} /s/core  (n={len(v)})")
PYEOF
awk -F'\t' '$1=="idle"{ printf "idle %s conns\t%s\t%s\n", $4, $2, $5 }' "$OUT/raw.tsv"
