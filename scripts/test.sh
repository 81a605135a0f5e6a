#!/usr/bin/env bash
# The test command (README, CI): format and lint checks, unit tests, then the integration suite
# under both I/O drivers (io_uring and epoll). Installs nothing: the tests need only cargo and
# loopback networking.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test (io_uring)"
RINGWAY_TEST_DRIVER=io_uring cargo test
echo "== integration tests again on the legacy (epoll) driver"
RINGWAY_TEST_DRIVER=legacy cargo test --tests
