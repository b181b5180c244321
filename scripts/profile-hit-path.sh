#!/usr/bin/env bash
# Instructions per cache hit under callgrind: the app (L1 off) and the Redis and lookup references
# (cache-demo-ref redis, cache-demo-ref lookup), each counted over the same 2,000 hits (50 products, 40 rounds, one keep-alive connection), after a warm-up,
# with start-up excluded. Repeatable, unlike sampling: run it before and after a change.
#
#   cargo build --release -p cache-demo -p cache-demo-testkit -p cache-demo-bench
#   scripts/profile-hit-path.sh [OUT_DIR]        (default target/callgrind)
#   callgrind_annotate --inclusive=yes OUT_DIR/app.out.1 | less
# BIN_DIR=DIR counts the cache-demo and cache-demo-ref built there instead (another commit's, to compare); the
# throwaway PostgreSQL and Redis still come from target/release/cache-demo-stack.
set -euo pipefail
T=${BIN_DIR:-target/release}
OUT=${1:-target/callgrind}
if [ -z "${REDIS_URL:-}" ]; then
  mkdir -p "$OUT"
  exec target/release/cache-demo-stack -- "$0" "$OUT"
fi
APP_ADDR=127.0.0.1:18080
REF_ADDR=127.0.0.1:18081
hits() { for _ in $(seq 1 40); do curl -s -o /dev/null "http://$1/api/products/[1-50]"; done; }
up() { for _ in $(seq 1 120); do curl -sf "http://$1/healthz" >/dev/null && return 0; sleep 0.5; done; return 1; }
# Counts what `hits` costs the process $1 (a callgrind pid) at $2, written to $3.1.
measure() {
  curl -s -o /dev/null "http://$2/api/products/[1-50]"
  curl -s -o /dev/null "http://$2/api/products/[1-50]"
  callgrind_control -z "$1" >/dev/null 2>&1
  hits "$2"
  callgrind_control -d "$1" >/dev/null 2>&1
  kill -KILL "$1"
  wait "$1" 2>/dev/null || true
}
L1_ENABLED=false LISTEN_ADDR=$APP_ADDR RUST_LOG=warn \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/app.out" "$T/cache-demo" >"$OUT/app.log" 2>&1 &
app=$!
up $APP_ADDR
measure $app $APP_ADDR
for kind in redis lookup; do
  LISTEN_ADDR=$REF_ADDR valgrind --tool=callgrind --callgrind-out-file="$OUT/$kind.out" "$T/cache-demo-ref" $kind \
    >"$OUT/$kind.log" 2>&1 &
  ref=$!
  up $REF_ADDR
  measure $ref $REF_ADDR
done
for f in app redis lookup; do
  total=$(callgrind_annotate "$OUT/$f.out.1" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$f: $total instructions for 2,000 hits = $((total / 2000)) per hit"
done
