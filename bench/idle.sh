#!/usr/bin/env bash
# idle.sh - memory per idle HTTP/1.1 keep-alive client connection: ringway beside nginx and
# HAProxy (plain HTTP, each one worker / thread, proxying to one nginx origin). For each proxy
# and each count in IDLE, bench/idle_clients.py opens that many connections, sends one request
# on each, reads the answer and leaves the connection open and silent; after SETTLE seconds
# (longer than ringway's 1 s park delay) the proxy's resident memory growth per connection is
# reported (RSS minus lazily freed pages, from /proc/PID/smaps_rollup).
# Knobs: IDLE ["1000 9000"], SETTLE [3], RINGWAY_BIN, HTTP_EXTRA (lines for ringway's [http],
# e.g. "idle_park_ms = 0"), TARGETS ["nginx haproxy ringway"]. Needs nginx, haproxy, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-"1000 9000"}; SETTLE=${SETTLE:-3}
BIN=${RINGWAY_BIN:-$PWD/target/release/ringway}
[[ -n "${RINGWAY_BIN:-}" ]] || cargo build --release --quiet
W=$(mktemp -d -t ringway-idle.XXXXXX); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
ulimit -n "$(ulimit -Hn)"
ORIGIN=$(free_port); NGX=$(free_port); HAP=$(free_port); RW=$(free_port)
mkdir -p "$W/o" "$W/n"
cat >"$W/origin.conf" <<NGINX
worker_processes 1; daemon off; pid $W/o/pid; error_log $W/o/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $W/o; proxy_temp_path $W/o; fastcgi_temp_path $W/o; uwsgi_temp_path $W/o; scgi_temp_path $W/o;
  keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$ORIGIN; location / { default_type text/plain; return 200 "ok\n"; } } }
NGINX
cat >"$W/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $W/n/pid; error_log $W/n/error.log warn; worker_rlimit_nofile 19500;
events { worker_connections 19000; }
http { access_log off; client_body_temp_path $W/n; proxy_temp_path $W/n; fastcgi_temp_path $W/n; uwsgi_temp_path $W/n; scgi_temp_path $W/n;
  keepalive_timeout 300s; keepalive_requests 100000000;
  upstream backend { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$NGX backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
cat >"$W/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 9900
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$HAP
  default_backend be
backend be
  server s1 127.0.0.1:$ORIGIN
HAP
cat >"$W/ringway.toml" <<TOML
[instance]
workers = 1
[http]
keepalive_timeout_ms = 300000
max_connections_per_worker = 19000
${HTTP_EXTRA:-}
[[listener]]
listen = "127.0.0.1:$RW"
[upstream.o]
endpoints = [{ addr = "127.0.0.1:$ORIGIN" }]
[service.s]
[[service.s.api]]
name = "all"
path = "/*"
upstream = "o"
TOML
declare -A PID PORT
start() { local name=$1 port=$2; shift 2; "$@" >"$W/$name.out" 2>&1 & PID[$name]=$!; PORT[$name]=$port; PIDS+=("$!"); wait_port "$port"; }
start origin "$ORIGIN" nginx -p "$W/o" -e "$W/o/error.log" -c "$W/origin.conf"
start nginx "$NGX" nginx -p "$W/n" -e "$W/n/error.log" -c "$W/nginx.conf"
start haproxy "$HAP" haproxy -db -f "$W/haproxy.cfg"
start ringway "$RW" env RUST_LOG=warn "$BIN" -c "$W/ringway.toml"
# resident memory of the process tree, KiB, without pages the allocator has freed lazily
# (MADV_FREE: counted in RSS until the kernel needs them; mimalloc frees that way)
rss_kib() { local t=0 p v; for p in "$1" $(pgrep -P "$1" || true); do v=$(awk '/^Rss:/{r=$2} /^LazyFree:/{l=$2} END{print r-l}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); t=$((t+v)); done; echo $t; }
printf "%-8s %8s %12s %12s\n" target conns rss_growth kib_per_conn
for n in $IDLE; do
  for t in ${TARGETS:-nginx haproxy ringway}; do
    before=$(rss_kib "${PID[$t]}")
    rm -f "$W/ready"
    python3 bench/idle_clients.py 127.0.0.1 "${PORT[$t]}" "$n" "$W/ready" &
    holder=$!
    for _ in $(seq 1 600); do [[ -e "$W/ready" ]] && break; sleep 0.1; done
    sleep "$SETTLE"
    after=$(rss_kib "${PID[$t]}")
    kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
    sleep 1
    printf "%-8s %8s %12s %12s\n" "$t" "$n" "$((after - before))" "$(awk -v d=$((after - before)) -v n="$n" 'BEGIN{printf "%.2f", d/n}')"
  done
done
