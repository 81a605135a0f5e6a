#!/usr/bin/env bash
# The test command (README, CI): format and lint checks, unit tests, then the integration suite
# under both I/O drivers (io_uring and epoll). Besides cargo and loopback networking the tests
# need python3 with prometheus_client (the reference parser for /metrics): installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "== installing prometheus_client (PyPI) for the /metrics parser test"
  python3 -m pip install --quiet --disable-pip-version-check prometheus_client \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages prometheus_client
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test (io_uring)"
RINGWAY_TEST_DRIVER=io_uring cargo test
echo "== integration tests again on the legacy (epoll) driver"
RINGWAY_TEST_DRIVER=legacy cargo test --tests
