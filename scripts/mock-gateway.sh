# Sourced (not run) by scripts/render-dashboard.sh and tests/soak/slowloris.sh: builds the release
# binary and starts ringway in the background with a mock API on "/*" and the admin endpoint on
# free loopback ports. Sets W (work dir), PORT, ADMIN, RW (pid); EXTRA_PIDS is killed on exit
# too; KEEP=1 keeps $W.
cargo build --release --quiet
W=$(mktemp -d -t "ringway-${1:-mock}.XXXXXX")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port)
cat >"$W/ringway.toml" <<TOML
[admin]
listen = "127.0.0.1:$ADMIN"
[[listener]]
listen = "127.0.0.1:$PORT"
[service.demo]
[[service.demo.api]]
name = "hello"
path = "/*"
mock = { body = "hi" }
TOML
RUST_LOG=warn target/release/ringway -c "$W/ringway.toml" & RW=$!
EXTRA_PIDS=()
trap 'kill $RW "${EXTRA_PIDS[@]}" 2>/dev/null; [[ -n "${KEEP:-}" ]] || rm -rf "$W"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/healthz" >/dev/null && break; sleep 0.1; done
