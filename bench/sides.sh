# Shared setup for the side-by-side benches (sourced by bulk.sh, h2.sh, idle.sh, openloop.sh,
# overload.sh, tls.sh): ringway beside nginx and HAProxy, each one worker / thread, all proxying
# to one nginx origin.
# Sourcing it builds the release binary unless RINGWAY_BIN is set (BIN is the binary), makes a
# work dir $W (removed on exit unless KEEP=1) and $OUT, raises the open-file limit and picks
# free ports ORIGIN, NGX, HAP, RW. Helpers:
#   write_origin            $W/origin.conf: "ok\n" on every path, a 4 KiB file on /4k
#   write_nginx [LISTEN_OPTS] [SERVER_LINES]   $W/nginx.conf proxying with upstream keep-alive
#   write_haproxy           $W/haproxy.cfg (mode http, keep-alive, http-reuse always)
#   write_ringway [HTTP_LINES] [TOP_LINES] [LISTENER_LINES]  $W/ringway.toml, one worker
#   start_ringway_b PREFIX...  A/B: RINGWAY_B's binary as target ringway_b (see below)
#   make_cert               an ECDSA P-256 certificate for localhost / 127.0.0.1 ($W/cert.pem,
#                           key.pem, combined.pem) and each proxy's lines for it: NGX_TLS (nginx
#                           server lines, add `ssl` to its listen options), RW_TLS (ringway
#                           listener lines); haproxy_tls then makes $W/haproxy.cfg's bind HTTPS
#   start NAME PORT CMD...  runs CMD in the background, records PID[NAME] / PORT[NAME], waits for
#                           the port
#   cpu_ns PID              run time of the process tree so far (schedstat), ns
#   rss_kib PID             resident memory of the process tree, KiB, minus lazily freed pages
#   med                     the median of the numbers on stdin
#   round_order R T...      the targets T in round R's order (reversed in even rounds)
BIN=${RINGWAY_BIN:-$PWD/target/release/ringway}
[[ -n "${RINGWAY_BIN:-}" ]] || cargo build --release --quiet
W=$(mktemp -d -t "ringway-${1:-sides}.XXXXXX"); chmod 755 "$W"
OUT=${OUT:-$W/out}; mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; [[ "${KEEP:-0}" == 1 ]] || rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
ulimit -n "$(ulimit -Hn)"
ORIGIN=$(free_port); NGX=$(free_port); HAP=$(free_port); RW=$(free_port)
mkdir -p "$W/o" "$W/n"

write_origin() {
  head -c 4096 /dev/zero | tr '\0' 'x' >"$W/o/4k"
  cat >"$W/origin.conf" <<NGINX
worker_processes 1; daemon off; pid $W/o/pid; error_log $W/o/error.log warn; worker_rlimit_nofile 19000;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $W/o; proxy_temp_path $W/o; fastcgi_temp_path $W/o; uwsgi_temp_path $W/o; scgi_temp_path $W/o;
  keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$ORIGIN backlog=4096;
    location = /4k { root $W/o; default_type text/plain; try_files /4k =404; }
    location / { default_type text/plain; return 200 "ok\n"; } } }
NGINX
}

write_nginx() {
  cat >"$W/nginx.conf" <<NGINX
worker_processes 1; daemon off; pid $W/n/pid; error_log $W/n/error.log warn; worker_rlimit_nofile 19500;
events { worker_connections 19000; }
http { access_log off; client_body_temp_path $W/n; proxy_temp_path $W/n; fastcgi_temp_path $W/n; uwsgi_temp_path $W/n; scgi_temp_path $W/n;
  keepalive_timeout 300s; keepalive_requests 100000000;
  upstream backend { server 127.0.0.1:$ORIGIN; keepalive 1024; }
  server { listen 127.0.0.1:$NGX ${1:-} backlog=4096;
    ${2:-}
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGINX
}

write_haproxy() {
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
}

write_ringway() {
  cat >"$W/ringway.toml" <<TOML
[instance]
workers = 1
egress_ip = "127.0.0.1"
[http]
keepalive_timeout_ms = 300000
keepalive_requests = 100000000
max_connections_per_worker = 19000
${1:-}
${2:-}
[[listener]]
listen = "127.0.0.1:$RW"
${3:-}
[upstream.o]
endpoints = [{ addr = "127.0.0.1:$ORIGIN" }]
[service.s]
[[service.s.api]]
name = "all"
path = "/*"
upstream = "o"
TOML
}

# A/B: when RINGWAY_B names a second binary, starts it with ringway's config on its own port as
# target "ringway_b" (PREFIX, e.g. `taskset -c 1`, goes before the command) and adds it to TARGETS.
# RINGWAY_B_DRIVER (e.g. legacy) sets its [instance] io_driver; RINGWAY_B may then be the same
# binary as ringway's.
start_ringway_b() {
  [[ -n "${RINGWAY_B:-}" ]] || return 0
  local port; port=$(free_port)
  sed -e "s/127.0.0.1:$RW\"/127.0.0.1:$port\"/" \
    -e "${RINGWAY_B_DRIVER:+s/^workers = 1\$/workers = 1\nio_driver = \"$RINGWAY_B_DRIVER\"/}" \
    "$W/ringway.toml" >"$W/ringway_b.toml"
  start ringway_b "$port" "$@" env RUST_LOG=warn "$RINGWAY_B" -c "$W/ringway_b.toml"
  TARGETS="$TARGETS ringway_b"
}
make_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
  cat "$W/cert.pem" "$W/key.pem" >"$W/combined.pem"
  NGX_TLS="ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
  RW_TLS="[[listener.tls]]
cert = \"$W/cert.pem\"
key = \"$W/key.pem\""
}
haproxy_tls() {
  sed -i "s|^  bind 127.0.0.1:$HAP\$|  bind 127.0.0.1:$HAP ssl crt $W/combined.pem alpn http/1.1 ssl-min-ver TLSv1.2|" "$W/haproxy.cfg"
}
declare -A PID PORT
start() { local name=$1 port=$2; shift 2; "$@" >"$W/$name.out" 2>&1 & PID[$name]=$!; PORT[$name]=$port; PIDS+=("$!"); wait_port "$port"; }
tree() { echo "$1"; pgrep -P "$1" || true; }
cpu_ns() { local p; for p in $(tree "$1"); do cat /proc/"$p"/task/*/schedstat 2>/dev/null; done | awk '{t+=$1} END {printf "%.0f\n", t}'; }
# (MADV_FREE pages count in RSS until the kernel needs them)
rss_kib() { local t=0 p v; for p in $(tree "$1"); do v=$(awk '/^Rss:/{r=$2} /^LazyFree:/{l=$2} END{print r-l}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); t=$((t+v)); done; echo $t; }
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# The targets of round R (the words after it), reversed in even rounds: a fixed order charges
# whatever a round's position costs (the last of a round ran ~10% dearer in bench/RESULTS.md §39)
# to the same target every time.
round_order() { local r=$1; shift; if (( r % 2 )); then echo "$*"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi; }
