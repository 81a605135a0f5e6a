#!/usr/bin/env bash
# Build (release) and run ringway with the shipped config, or the one given as $1.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -- -c "${1:-conf/ringway.toml}"
