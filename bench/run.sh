#!/usr/bin/env bash
# Side-by-side proxy benchmark on loopback: ringway, nginx, HAProxy and an L4 relay floor, in one
# interleaved run (anchors.sh), the proxy pinned alone to CPU 1, wrk + origin on CPU 0.
# Installs wrk/nginx/haproxy from Debian if missing. Knobs: see anchors.sh (DUR, REPS, CONNS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi
cargo build --release --quiet
export TARGETS=${TARGETS:-"direct l4 nginx haproxy"}
export EXTRA=${EXTRA:-"ringway@28094@bash $PWD/bench/ringway-target.sh"}
exec bash bench/anchors.sh
