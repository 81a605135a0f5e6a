#!/usr/bin/env bash
# uring-relay.sh - how cheap can an io_uring relay be on this box? (issue #19)
# Builds bench/uring-relay (a bare TCP relay on one io_uring, no HTTP) and measures it in both
# modes beside the rig's L4 floor (HAProxy `mode tcp`, epoll), nginx and ringway, in one
# interleaved anchors.sh run (each proxy alone on CPU 1, wrk + origin on CPU 0):
#   uring_oneshot   one receive at a time per direction, as monoio 0.2.4 drives sockets
#   uring_multi     multishot receive + a provided-buffer ring
# Knobs are anchors.sh's (DUR, WARM, REPS, CONNS, URLPATHS, OUT); TARGETS defaults to "l4 nginx";
# MORE adds anchors.sh EXTRA entries (NAME@PORT@COMMAND;...), e.g. a second ringway build.
# Loopback only; every run is time-bounded by wrk -d.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
(cd "$HERE/uring-relay" && cargo build --release --quiet)
R="$HERE/uring-relay/target/release/uring-relay"
EXTRA="uring_oneshot@28301@$R \$LISTEN_ADDR \$BACKEND_ADDR oneshot"
EXTRA+=";uring_multi_defer@28304@env RELAY_RING=defer $R \$LISTEN_ADDR \$BACKEND_ADDR multishot"
EXTRA+=";uring_multi@28302@$R \$LISTEN_ADDR \$BACKEND_ADDR multishot"
EXTRA+=";ringway@28303@bash $HERE/ringway-target.sh"
TARGETS=${TARGETS:-"l4 nginx"} EXTRA="$EXTRA${MORE:+;$MORE}" exec bash "$HERE/anchors.sh"
