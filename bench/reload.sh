#!/usr/bin/env bash
# reload.sh - latency under keep-alive load while live reloads happen, against the same load
# with the same client activity but no reloads. wrk (CONNS keep-alive connections, DUR seconds)
# drives ringway proxying to an nginx origin. Each of REPS rounds runs twice, interleaved:
#   control: bench/reload_driver.py sends RELOADS GET /healthz calls spread over the run;
#   reload:  it swaps the config file (alternately adding and removing an API) and posts
#            RELOADS POST /reload calls at the same cadence.
# One Python process does all the calls (no fork/exec per call), so both runs load the
# machine alike and the p99 ratio isolates what the reloads cost. Prints each run's wrk
# p50/p99/max/errors and, at the end, the median p99 of each kind and their ratio.
# Knobs: DUR [10], RELOADS [20], CONNS [50], REPS [3]. Needs wrk, nginx, python3. Loopback, bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10}; RELOADS=${RELOADS:-20}; CONNS=${CONNS:-50}; REPS=${REPS:-3}
source bench/lib.sh reload
write() { # $1: 1 = with the extra API
  local extra=""
  [[ "$1" == 1 ]] && extra=$'[[service.s.api]]\nname = "extra"\npath = "/extra/*"\nupstream = "o"\n'
  { gateway_toml; service_toml s; echo "$extra"; } >"$W/ringway.toml"
}
start_origin
write 0
start_ringway
cp "$W/ringway.toml" "$W/cfg0.toml"; write 1; cp "$W/ringway.toml" "$W/cfg1.toml"; cp "$W/cfg0.toml" "$W/ringway.toml"
run() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$PROXY/" | awk '
  /Latency Distribution/ {d=1} d && /50%/ {p50=$2} d && /99%/ {p99=$2}
  /^    Latency/ {max=$4} /Socket errors/ {err=$0} /Non-2xx/ {non=$0} /Requests\/sec/ {rps=$2}
  END {printf "rps=%s p50=%s p99=%s max=%s %s %s\n", rps, p50, p99, max, err, non}'; }
wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$PROXY/" >/dev/null   # warm-up
driver() { python3 bench/reload_driver.py --admin "127.0.0.1:$ADMIN" --config "$W/ringway.toml" \
  --alt "$W/cfg1.toml" "$W/cfg0.toml" --count "$RELOADS" --window "$((DUR - 2))" "$@"; }
CTL=(); REL=()
for r in $(seq 1 "$REPS"); do
  for kind in control reload; do
    flag=(); [[ $kind == control ]] && flag=(--control)
    driver "${flag[@]}" >"$W/driver.txt" & dp=$!
    line=$(run); wait "$dp" || echo "  (driver reported a non-200 answer)"
    p99=$(to_ms "$(sed -n 's/.* p99=\([^ ]*\).*/\1/p' <<<"$line")")
    [[ $kind == control ]] && CTL+=("$p99") || REL+=("$p99")
    printf '%d %-8s %s | %s\n' "$r" "$kind" "$line" "$(cat "$W/driver.txt")"
  done
done
mc=$(median "${CTL[@]}"); mr=$(median "${REL[@]}")
echo "median p99: control ${mc} ms, reload ${mr} ms, ratio $(awk -v a="$mr" -v b="$mc" 'BEGIN{printf "%.2f", a/b}')"
curl -s "127.0.0.1:$ADMIN/config" | head -c 120; echo
