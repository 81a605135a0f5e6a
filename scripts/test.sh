#!/usr/bin/env bash
# The test command (README, CI): format and lint checks, unit tests, then the integration suite
# under both I/O drivers (io_uring and epoll). Besides cargo and loopback networking the tests
# need python3 with prometheus_client (the reference parser for /metrics), promtool (Debian's
# prometheus package, for `promtool check metrics`), nginx (HTTPS origins), Apache with
# ModSecurity and the OWASP Core Rule Set (the WAF tests), dnsmasq, redis-server, PyJWT, and for
# the HTTP/2 tests curl, h2load (nghttp2-client) and Python's h2: installed here if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start as real components: promtool (`promtool check metrics`),
# nginx (the HTTPS origin of the upstream TLS tests) and Apache + ModSecurity 2 + OWASP CRS
# (the WAF verdict service, scripts/waf-crs.sh), dnsmasq (the DNS server of tests/dns.rs) and
# redis-server (single and 3-master cluster, tests/cluster.rs). Their services are never started by the
# install (policy-rc.d); tests start their own instances on loopback ports and stop them by PID.
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
[ -e /usr/lib/apache2/modules/mod_security2.so ] || missing+=(libapache2-mod-security2)
[ -d /usr/share/modsecurity-crs/rules ] || missing+=(modsecurity-crs)
[ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
# HTTP/2 clients of tests/http2.rs: curl with nghttp2 (Debian's has it) and h2load
command -v curl >/dev/null || missing+=(curl)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages; their services are not started)"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
    install || { apt-get update -qq >/dev/null 2>&1 && install; } \
      || echo "!! could not install ${missing[*]}: the tests that need them will fail"
    [ "$made_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "!! missing ${missing[*]} and not root: the tests that need them will fail (apt-get install ${missing[*]})"
  fi
fi

if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "== installing prometheus_client (PyPI) for the /metrics parser test"
  python3 -m pip install --quiet --disable-pip-version-check prometheus_client \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages prometheus_client
fi

if ! python3 -c "import jwt, cryptography" 2>/dev/null; then
  echo "== installing PyJWT with cryptography (PyPI): the JWT consumer tests sign their tokens with it"
  python3 -m pip install --quiet --disable-pip-version-check "pyjwt[crypto]" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "pyjwt[crypto]"
fi

if ! python3 -c "import h2, hyperframe, hpack" 2>/dev/null; then
  echo "== installing h2 (PyPI): the HTTP/2 attack tests send their frames with it"
  python3 -m pip install --quiet --disable-pip-version-check h2 \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages h2
fi

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test (io_uring)"
RINGWAY_TEST_DRIVER=io_uring cargo test
echo "== integration tests again on the legacy (epoll) driver"
RINGWAY_TEST_DRIVER=legacy cargo test --tests
echo "== the wire-level hardening suites again over TLS (HTTPS listener, both drivers)"
RINGWAY_TEST_TLS=1 RINGWAY_TEST_DRIVER=io_uring cargo test --test h1_wire --test slow_clients --test proxy_basic --test parking
RINGWAY_TEST_TLS=1 RINGWAY_TEST_DRIVER=legacy cargo test --test h1_wire --test slow_clients --test proxy_basic --test parking
