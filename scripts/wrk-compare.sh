#!/usr/bin/env bash
# The calibrated comparison of `make bench`, with wrk as the load generator instead of cache-demo-bench:
# `/healthz` of the app (L1 off) against `cache-demo-ref static`, and hits of products 1–50 against
# `cache-demo-ref redis` and `cache-demo-ref lookup`, each server in turn for DURATION, ROUNDS times. Prints one
# Markdown row per run: requests/s, CPU per request of the server, of wrk and of Redis (from /proc; wrk's from
# its rusage), and the server's context switches per 1,000 requests (waited / preempted).
#
#   apt-get install wrk
#   cargo build --release -p cache-demo -p cache-demo-testkit -p cache-demo-bench
#   scripts/wrk-compare.sh                        (DURATION=5s ROUNDS=2 THREADS=2 CONNECTIONS=32)
# BIN_DIR=DIR runs the cache-demo and cache-demo-ref built there instead; the throwaway PostgreSQL and Redis come
# from target/release/cache-demo-stack.
set -euo pipefail
T=${BIN_DIR:-target/release}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
if [ -z "${REDIS_URL:-}" ]; then
  command -v wrk >/dev/null || { echo "wrk-compare: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
  exec target/release/cache-demo-stack -- "$0"
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/products.lua" <<'EOF'
request = function() return wrk.format(nil, "/api/products/" .. math.random(1, 50)) end
EOF
redis_port=${REDIS_URL##*:}
redis_port=${redis_port%%/*}
redis_pid=$(redis-cli -p "$redis_port" info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')

start() { # NAME ADDR COMMAND...: starts a server in the background
  local name=$1 addr=$2
  shift 2
  LISTEN_ADDR=$addr RUST_LOG=warn "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  eval "pid_$name=$!"
  for _ in $(seq 1 120); do curl -sf "http://$addr/healthz" >/dev/null && return 0; sleep 0.25; done
  echo "wrk-compare: $name did not start; its log:" >&2
  cat "$work/$name.log" >&2
  exit 1
}
start app 127.0.0.1:18180 env L1_ENABLED=false "$T/cache-demo"
start static 127.0.0.1:18181 "$T/cache-demo-ref" static
start redis_ref 127.0.0.1:18182 "$T/cache-demo-ref" redis --key-prefix "${CACHE_PREFIX:-cache-demo}"
start lookup_ref 127.0.0.1:18183 "$T/cache-demo-ref" lookup --key-prefix "${CACHE_PREFIX:-cache-demo}"
# Every product the load reads is stored once through the app, so the references find the app's entries.
curl -s -o /dev/null "http://127.0.0.1:18180/api/products/[1-50]"
for port in 18182 18183; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/products/1")" = 200 ] ||
    { echo "wrk-compare: the reference on $port does not find the app's entries" >&2; exit 1; }
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v, n}'; }
run() { # LABEL PID URL [wrk arguments]
  local label=$1 pid=$2 url=$3
  shift 3
  local c0 r0 s0 c1 r1 s1 out
  c0=$(cpu "$pid") r0=$(cpu "$redis_pid") s0=$(switches "$pid")
  out=$( { /usr/bin/time -f "wrk-cpu %U %S" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" "$url"; } 2>&1)
  c1=$(cpu "$pid") r1=$(cpu "$redis_pid") s1=$(switches "$pid")
  awk -v label="$label" -v c="$((c1 - c0))" -v r="$((r1 - r0))" -v s="$s0 $s1" -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ {rps = $2}
    / requests in / {n = $1}
    /^wrk-cpu/ {w = $2 + $3}
    /Non-2xx|Socket errors/ {bad = bad " " $0}
    END {
      split(s, x, " ")
      us = 1e6 / n
      printf "| %s | %.0f | %.2f | %.2f | %.2f | %.0f / %.0f |%s\n", label, rps, c / hz * us, w * us, r / hz * us,
        (x[3] - x[1]) * 1000 / n, (x[4] - x[2]) * 1000 / n, bad
    }' <<<"$out"
}
echo "| server, request | requests/s | server CPU µs/request | wrk CPU µs/request | Redis CPU µs/request | server waited / preempted, per 1,000 requests |"
echo "|---|--:|--:|--:|--:|--:|"
for _ in $(seq 1 "$ROUNDS"); do
  run "static reference, \`/healthz\`" "$pid_static" http://127.0.0.1:18181/healthz
  run "app, \`/healthz\`" "$pid_app" http://127.0.0.1:18180/healthz
  run "app, hits (L1 off)" "$pid_app" http://127.0.0.1:18180/ -s "$work/products.lua"
  run "Redis reference, the same hits" "$pid_redis_ref" http://127.0.0.1:18182/ -s "$work/products.lua"
  run "lookup reference, the same hits" "$pid_lookup_ref" http://127.0.0.1:18183/ -s "$work/products.lua"
done
