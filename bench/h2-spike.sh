#!/usr/bin/env bash
# h2-spike.sh - the two HTTP/2 library candidates of issue #18 side by side (docs/HTTP2.md):
# bench/h2-spike answers every h2c stream 200 "ok" on one io_uring thread, built with
# monoio-http's h2 ("mh") or the h2 crate over monoio-compat ("h2"). h2load (nghttp2-client)
# runs CONNS connections x STREAMS concurrent streams, N requests, REPS rounds each, alternating;
# prints req/s and the server's CPU per request (schedstat) and RSS after the run.
# Knobs: CONNS [50], STREAMS [10], N [300000], REPS [3]. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/h2-spike"
CONNS=${CONNS:-50}; STREAMS=${STREAMS:-10}; N=${N:-300000}; REPS=${REPS:-3}
cargo build --release --quiet
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for r in $(seq 1 "$REPS"); do
  for lib in mh h2; do
    p=$(port)
    taskset -c 1 target/release/h2spike "$lib" "$p" & pid=$!
    sleep 0.3
    c0=$(cat /proc/$pid/task/*/schedstat | awk '{t+=$1} END {print t}')
    out=$(taskset -c 0 h2load -c "$CONNS" -m "$STREAMS" -n "$N" "http://127.0.0.1:$p/" 2>&1)
    c1=$(cat /proc/$pid/task/*/schedstat | awk '{t+=$1} END {print t}')
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    printf '%d %-3s req/s=%s succeeded=%s cpu_us/req=%s rss_kib=%s\n' "$r" "$lib" "$rps" "$ok" \
      "$(awk -v a="$c0" -v b="$c1" -v n="$N" 'BEGIN{printf "%.2f", (b-a)/1000/n}')" "$rss"
  done
done
