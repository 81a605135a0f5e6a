# Shared setup for the single-gateway benches (sourced, not run): builds the release binary,
# makes a work dir $W cleaned on exit with every PID in $PIDS, picks free ports ORIGIN, PROXY,
# ADMIN, and writes an nginx origin config ("ok\n" on every path) to $W/origin.conf. Helpers:
# start_origin [CONF], gateway_toml [INSTANCE_LINES] [ENDPOINT], service_toml NAME [HOST]
# [SERVICE_LINES] [API_LINES], start_ringway (on
# $W/ringway.toml; sets RW), cpu_ns [PID], wrk_summary, to_ms (wrk's "812.00us"/"1.2ms"/"2s" in
# ms), median VALUES...
cargo build --release --quiet
W=$(mktemp -d -t "ringway-${1:-bench}.XXXXXX"); chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(free_port); PROXY=$(free_port); ADMIN=$(free_port)
cat >"$W/origin.conf" <<NGINX
worker_processes 1; daemon off; pid $W/nginx.pid; error_log $W/error.log warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $W/cb; proxy_temp_path $W/pt; fastcgi_temp_path $W/ft;
  uwsgi_temp_path $W/ut; scgi_temp_path $W/st; keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$ORIGIN; location / { default_type text/plain; return 200 "ok\n"; } } }
NGINX

# Starts nginx on CONF (default: the origin).
start_origin() { nginx -p "$W" -e "$W/error.log" -c "${1:-$W/origin.conf}" & PIDS+=($!); }
# Starts ringway on $W/ringway.toml, sets RW to its PID and waits until /healthz answers.
start_ringway() {
  RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" &
  RW=$!
  PIDS+=("$RW")
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$ADMIN/healthz" >/dev/null && return; sleep 0.1; done
  echo "ringway did not start" >&2
  exit 1
}
# Run time of every thread of process PID (default: ringway) so far, in ns (schedstat).
cpu_ns() { cat /proc/"${1:-$RW}"/task/*/schedstat | awk '{t+=$1} END {print t}'; }
# wrk --latency output on stdin -> "requests req/s p50 p99 non2xx".
wrk_summary() {
  awk '/Latency Distribution/ {d=1} d && /50%/ {p50=$2} d && /99%/ {p99=$2}
    / requests in / {n=$1} /Non-2xx/ {non=$5} /Requests\/sec/ {rps=$2}
    END {printf "%s %s %s %s %s\n", n, rps, p50, p99, (non == "" ? 0 : non)}'
}
# The common head of a bench config on stdout: [instance] (workers = "auto" plus INSTANCE_LINES),
# [admin] on $ADMIN, one listener on $PROXY, keep-alive without a request limit, and upstream "o"
# at ENDPOINT (default: the nginx origin). Scripts append their services.
gateway_toml() {
  cat <<TOML
[instance]
workers = "auto"
${1:-}
[admin]
listen = "127.0.0.1:$ADMIN"
[[listener]]
listen = "127.0.0.1:$PROXY"
[http]
keepalive_requests = 100000000
[upstream.o]
endpoints = [{ addr = "${2:-127.0.0.1:$ORIGIN}" }]
TOML
}
# A service NAME (on HOST when given) with one API "all" proxying every path to upstream "o",
# on stdout; SERVICE_LINES and API_LINES are added to the two tables.
service_toml() {
  echo "[service.$1]"
  [[ -n "${2:-}" ]] && echo "hosts = [\"$2\"]"
  [[ -n "${3:-}" ]] && echo "$3"
  printf '[[service.%s.api]]\nname = "all"\npath = "/*"\nupstream = "o"\n' "$1"
  [[ -n "${4:-}" ]] && echo "$4"
  return 0
}
# A wrk duration ("812.00us", "1.20ms", "2.00s") in milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}' <<<"$1"; }
# The median of the arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
