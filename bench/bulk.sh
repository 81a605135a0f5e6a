#!/usr/bin/env bash
# bulk.sh - CPU per GiB proxied, ringway beside nginx, HAProxy (HTTP mode) and the L4 relay floor
# (HAProxy in TCP mode), each one worker / thread pinned alone to PROXY_CPU; curl and the origin
# (bench/bulk_origin.py: sendfile for downloads, reads and discards uploads before answering) on
# LOAD_CPU. Cells, each run REPS times interleaved over the targets:
#   down1g    one 1 GiB download through one connection (curl -o /dev/null)
#   up1g      one 1 GiB upload through one connection (curl -T, Content-Length framed)
#   down100   100 parallel 10 MiB downloads (curl -Z --parallel-max 100)
#   up100     100 parallel 10 MiB uploads
# Reported: the proxy's CPU time per GiB moved (schedstat of its process tree) and the wall-clock
# rate, medians; and each proxy / nginx. Proxies stream: nginx has proxy_request_buffering off
# and no temp files (proxy_max_temp_file_size 0), ringway max_body_bytes = 0 (unlimited).
# Knobs: REPS [3], CELLS ["down1g up1g down100 up100"], TARGETS ["l4 nginx haproxy ringway"],
#        RINGWAY_BIN, RINGWAY_B (a second binary: target ringway_b, for A/B), HTTP_EXTRA (lines for ringway's [http]), LOAD_CPU [0], PROXY_CPU [1], OUT,
#        TLS [0] (1: the client side is HTTPS on every proxy, one ECDSA P-256 certificate, TLS 1.3
#        from curl; the origin stays plain; the L4 relay is left out, it would relay TLS to it).
# Needs nginx, haproxy, curl, python3. Uses ~1.1 GiB in the work dir (removed at exit).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}; CELLS=${CELLS:-"down1g up1g down100 up100"}; TLS=${TLS:-0}
if [[ "$TLS" == 1 ]]; then TARGETS=${TARGETS:-"nginx haproxy ringway"}; else TARGETS=${TARGETS:-"l4 nginx haproxy ringway"}; fi
LOAD_CPU=${LOAD_CPU:-0}; PROXY_CPU=${PROXY_CPU:-1}
source bench/sides.sh bulk
SCHEME=http; NGX_LISTEN=""; NGX_TLS=""; RW_TLS=""
[[ "$TLS" == 1 ]] && { make_cert; SCHEME=https; NGX_LISTEN=ssl; }
write_nginx "$NGX_LISTEN" "client_max_body_size 0; proxy_request_buffering off; proxy_max_temp_file_size 0; $NGX_TLS"
write_haproxy; write_ringway "${HTTP_EXTRA:-}" "" "$RW_TLS"
if [[ "$TLS" == 1 ]]; then haproxy_tls; fi
sed -i 's/^upstream = "o"/&\nmax_body_bytes = 0\ntimeout_ms = 120000/' "$W/ringway.toml"
L4=$(free_port)
sed -e 's/^  mode http/  mode tcp/' -e '/option http-keep-alive/d' -e '/http-reuse/d' -e '/http-keep-alive/d' \
  -e "s/127.0.0.1:$HAP/127.0.0.1:$L4/" "$W/haproxy.cfg" >"$W/l4.cfg"
mkdir -p "$W/files"
head -c $((1 << 30)) /dev/zero >"$W/files/1g"; head -c $((10 << 20)) /dev/zero >"$W/files/10m"
start origin "$ORIGIN" taskset -c "$LOAD_CPU" python3 bench/bulk_origin.py "$ORIGIN" "$W/files"
start nginx "$NGX" taskset -c "$PROXY_CPU" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" taskset -c "$PROXY_CPU" haproxy -db -f "$W/haproxy.cfg"
start l4 "$L4" taskset -c "$PROXY_CPU" haproxy -db -f "$W/l4.cfg"
start ringway "$RW" taskset -c "$PROXY_CPU" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
start_ringway_b taskset -c "$PROXY_CPU"

# one cell against one target: prints bytes moved
run_cell() {
  local url=$SCHEME://127.0.0.1:$2 i cfg=$W/curl.cfg
  case $1 in
    down1g) curl -ksf --no-progress-meter -o /dev/null -w '%{size_download}\n' "$url/1g" ;;
    up1g) curl -ksf --no-progress-meter -o /dev/null -T "$W/files/1g" -w '%{size_upload}\n' "$url/up" ;;
    down100|up100)
      : >"$cfg"
      for i in $(seq 1 100); do
        if [[ $1 == down100 ]]; then printf 'url = "%s/10m"\noutput = "/dev/null"\n' "$url"
        else printf 'url = "%s/up"\nupload-file = "%s"\noutput = "/dev/null"\n' "$url" "$W/files/10m"; fi
      done >>"$cfg"
      curl -ksf --no-progress-meter -Z --parallel-max 100 -K "$cfg" -w '%{size_download} %{size_upload}\n' | awk '{t+=$1+$2} END {print t}' ;;
  esac
}

for t in $TARGETS; do run_cell down100 "${PORT[$t]}" >/dev/null; done  # warm-up (page cache, pools)
printf "cell\ttarget\trep\tbytes\tseconds\tcpu_s_per_gib\tgib_per_s\n" >"$OUT/raw.tsv"
for c in $CELLS; do
  for r in $(seq 1 "$REPS"); do
    for t in $(round_order "$r" $TARGETS); do
      a=$(cpu_ns "${PID[$t]}"); t0=$(date +%s%N)
      bytes=$(taskset -c "$LOAD_CPU" bash -c "$(declare -f run_cell); W=$W; SCHEME=$SCHEME; run_cell $c ${PORT[$t]}")
      t1=$(date +%s%N); b=$(cpu_ns "${PID[$t]}")
      awk -v c="$c" -v t="$t" -v r="$r" -v n="$bytes" -v s=$((t1 - t0)) -v cpu=$((b - a)) 'BEGIN {
        g = n / 2^30; printf "%s\t%s\t%s\t%d\t%.3f\t%.4f\t%.2f\n", c, t, r, n, s/1e9, cpu/1e9/g, g/(s/1e9) }' |
        tee -a "$OUT/raw.tsv" >&2
    done
  done
done

echo
echo "== bulk: proxy CPU seconds per GiB (lower is better) and GiB/s, medians of $REPS"
printf "%-8s" cell; for t in $TARGETS; do printf " %16s" "$t"; done; echo "   ringway/nginx  ringway/l4"
for c in $CELLS; do
  printf "%-8s" "$c"
  for t in $TARGETS; do
    cpu=$(awk -F'\t' -v c="$c" -v t="$t" '$1==c && $2==t {print $6}' "$OUT/raw.tsv" | med)
    rate=$(awk -F'\t' -v c="$c" -v t="$t" '$1==c && $2==t {print $7}' "$OUT/raw.tsv" | med)
    printf " %8.3f s %4.1f/s" "$cpu" "$rate"
  done
  ratio() { awk -F'\t' -v c="$c" -v x="$1" '$1==c {v[$2,$3]=$6; if ($3>n) n=$3}
    END {for (r=1; r<=n; r++) if (v[x,r] > 0) printf "%.3f\n", v["ringway",r]/v[x,r]}' "$OUT/raw.tsv" | med; }
  printf "   %13s %11s\n" "$(ratio nginx)" "$(ratio l4)"
done
echo "raw: $OUT"
