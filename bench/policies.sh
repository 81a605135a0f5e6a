#!/usr/bin/env bash
# policies.sh - what consumers and policies cost, in one run: wrk (CONNS keep-alive connections,
# DUR seconds) against ringway proxying GET requests to an nginx origin, on services that
# differ only in their policies:
#   off     none
#   on      auth by API key (header) + one request-header rewrite + CORS (the request has an
#           allowed Origin, so the response gets the CORS fields)
#   jwt     auth by an ES256 JWT (JWKS), one token: verified once per core, then cached
#   jwt-new auth by ES256 JWTs, a different token on every request (30 000 made by PyJWT,
#           more than the per-core cache keeps): every request pays for the signature check
# Rows run in turn, REPS rounds. Per run: throughput, wrk p50/p99, ringway's own CPU per request
# (its threads' run time from /proc/PID/task/*/schedstat, over the requests wrk completed).
# Knobs: DUR [8], CONNS [50], REPS [3], TOKENS [30000]. Needs wrk, nginx, python3 with PyJWT.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8}; CONNS=${CONNS:-50}; REPS=${REPS:-3}; TOKENS=${TOKENS:-30000}
source bench/lib.sh policies
python3 scripts/jwt-tool.py keys "$W/keys"
ISS=https://id.example.com
python3 - "$W/keys/es256.pem" "$TOKENS" "$ISS" >"$W/tokens.txt" <<'PY'
import sys, time, jwt
key = open(sys.argv[1], "rb").read()
exp = int(time.time()) + 3600
for i in range(int(sys.argv[2])):
    print(jwt.encode({"sub": "u%d" % i, "iss": sys.argv[3], "aud": "shop", "exp": exp}, key, algorithm="ES256", headers={"kid": "es-1"}))
PY
TOKEN=$(head -1 "$W/tokens.txt")
cat >"$W/rotate.lua" <<LUA
local tokens = {}
for line in io.lines("$W/tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/items", { ["Host"] = "jwt.test", ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
start_origin
{ gateway_toml; cat <<TOML
[consumer.partner]
keys = ["k-bench-partner-0001"]
[consumer.mobile]
jwt = { issuer = "$ISS", audience = "shop", jwks_file = "$W/keys/jwks.json" }
TOML
  service_toml off off.test
  service_toml on on.test 'auth = { methods = ["api_key"] }
request_headers = { set = { "x-env" = "prod" } }
cors = { origins = ["https://shop.example.com"] }'
  service_toml jwt jwt.test 'auth = { methods = ["jwt"] }'
} >"$W/ringway.toml"
start_ringway
URL="http://127.0.0.1:$PROXY/items"
run() { # $1: row
  local w=(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency)
  case $1 in
    off) "${w[@]}" -H "Host: off.test" "$URL" | wrk_summary ;;
    on) "${w[@]}" -H "Host: on.test" -H "x-api-key: k-bench-partner-0001" -H "Origin: https://shop.example.com" "$URL" | wrk_summary ;;
    jwt) "${w[@]}" -H "Host: jwt.test" -H "Authorization: Bearer $TOKEN" "$URL" | wrk_summary ;;
    jwt-new) "${w[@]}" -s "$W/rotate.lua" "$URL" | wrk_summary ;;
  esac
}
run off >/dev/null   # warm-up
printf '%-5s %-8s %10s %9s %9s %7s %11s\n' round row rps p50 p99 non2xx cpu_us/req
for r in $(seq 1 "$REPS"); do
  for row in off on jwt jwt-new; do
    c0=$(cpu_ns)
    read -r n rps p50 p99 non <<<"$(run "$row")"
    c1=$(cpu_ns)
    cpu=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN{printf "%.2f", (b-a)/1000/n}')
    printf '%-5s %-8s %10s %9s %9s %7s %11s\n' "$r" "$row" "$rps" "$p50" "$p99" "$non" "$cpu"
  done
done
