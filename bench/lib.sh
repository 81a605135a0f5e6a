# Shared setup for latency.sh and ratelimit.sh (sourced, not run): builds the release binary,
# makes a work dir $W cleaned on exit with every PID in $PIDS, picks free ports ORIGIN, PROXY,
# ADMIN, and writes an nginx origin config ("ok\n" on every path) to $W/origin.conf.
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
