#!/usr/bin/env bash
# callgrind.sh - ringway's own instructions per proxied request, counted by valgrind's callgrind
# (deterministic: the same binary and load give the same count whatever else the machine does,
# unlike CPU time on this 2-core box; what it leaves out is the kernel's share, docs/PERF.md).
# One worker on the legacy (epoll) driver (valgrind does not run io_uring), an nginx origin,
# N keep-alive requests from one wrk-like Python client over CONNS connections. Counting starts
# after a warm-up (callgrind_control --zero) and stops at the end (--dump); prints
# instructions/request and the top functions. BIN=... compares another build. Since RESULTS §35
# the epoll driver writes with a direct send(2) first, so counts from builds before and after
# that change are not comparable (−1 900 per request: the writes' runtime op, timer and future
# moves, which the io_uring driver still pays).
# PROTO=h2c: the same over HTTP/2 (h2c), driven by `h2load -c CONNS -m 10` (stream batching
# makes the count a little less exact than the HTTP/1.1 client's).
# Knobs: N [20000], CONNS [10], PROTO [h1|h2c], BIN [target/release/ringway], ACCESS_LOG [unset;
# json|logfmt: the access log on, to a file, in that format]. Needs valgrind,
# nginx, python3 (h2load for h2c).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20000}; CONNS=${CONNS:-10}; PROTO=${PROTO:-h1}
source bench/lib.sh callgrind
BIN=${BIN:-target/release/ringway}
start_origin
{ gateway_toml "io_driver = \"legacy\""; service_toml s; } | sed 's/^workers = "auto"/workers = 1/' >"$W/ringway.toml"
[[ "$PROTO" == h2c ]] && sed -i "s/^listen = \"127.0.0.1:$PROXY\"/&\nh2c = true/" "$W/ringway.toml"
[[ -n "${ACCESS_LOG:-}" ]] && printf '[access_log]\npath = "%s"\nformat = "%s"\n' "$W/access.log" "$ACCESS_LOG" >>"$W/ringway.toml"
valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" --dump-instr=no "$BIN" -c "$W/ringway.toml" 2>"$W/vg.log" &
VG=$!
PIDS+=($VG)
for _ in $(seq 1 200); do curl -sf "127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
load() { # $1 requests over CONNS keep-alive connections
  if [[ "$PROTO" == h2c ]]; then
    h2load -n "$1" -c "$CONNS" -m 10 "http://127.0.0.1:$PROXY/items" | grep -q "$1 succeeded" || echo "h2load: failures" >&2
    return
  fi
  python3 - "$PROXY" "$1" "$CONNS" <<'PY'
import socket, sys, threading
port, n, conns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
req = b"GET /items HTTP/1.1\r\nHost: x\r\n\r\n"
def run(k):
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    for _ in range(k):
        s.sendall(req)
        while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 4 + 3:
            buf += s.recv(65536)
        buf = buf[buf.index(b"\r\n\r\n") + 4 + 3:]
    s.close()
ts = [threading.Thread(target=run, args=(n // conns,)) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
PY
}
load 2000                                   # warm-up: pools, caches
callgrind_control --zero "$VG" >/dev/null
load "$N"
callgrind_control --dump "$VG" >/dev/null
sleep 0.5
OUTF=$(ls -t "$W"/cg.out* | head -1); [[ -n "${KEEP:-}" ]] && cp "$OUTF" "$KEEP"
total=$(callgrind_annotate "$OUTF" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "instructions per request: $(awk -v t="$total" -v n="$N" 'BEGIN{printf "%.0f", t/n}') ($total over $N requests)"
callgrind_annotate --inclusive=yes "$OUTF" 2>/dev/null | grep -E "^ *[0-9,]+ \(" | grep -E "ringway::|memcpy|memmove|httparse" | head -20 | sed -E "s/ \[[^]]*\]$//" | cut -c1-160
