#!/usr/bin/env bash
# End to end against a live Kubernetes cluster (minikube): build the image into it, `cache-demo-ctl up`, then
# through a port-forward: GET /api/categories twice (MISS, then HIT), and the key's TTL in Redis via redis-cli.
# Deletes the namespace afterwards unless KEEP=1. Skips (exit 0) when no cluster is reachable. Every step is
# bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
namespace=${NAMESPACE:-redis-demo}
image=${IMAGE:-cache-demo-app:latest}
port=${E2E_PORT:-18080}
ctl=target/debug/cache-demo-ctl

skip() {
    echo "e2e: $*, skipping"
    exit 0
}
command -v kubectl >/dev/null 2>&1 || skip "no reachable Kubernetes cluster (kubectl is not installed)"
timeout 20 kubectl cluster-info --request-timeout=5s >/dev/null 2>&1 || skip "no reachable Kubernetes cluster"
command -v curl >/dev/null 2>&1 || { echo "e2e: curl is needed" >&2; exit 1; }

echo "e2e: cluster $(kubectl config current-context 2>/dev/null || echo in-cluster), namespace $namespace"
timeout 1800 env IMAGE="$image" scripts/build-image.sh
cargo build --quiet -p cache-demo-ctl

forward_pid=""
cleanup() {
    if [ -n "$forward_pid" ]; then
        kill "$forward_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "e2e: KEEP=1, leaving namespace $namespace in place"
    else
        timeout 300 "$ctl" down --namespace "$namespace" --timeout 240 || true
    fi
}
trap cleanup EXIT

timeout 600 "$ctl" up --namespace "$namespace" --image "$image" --timeout 540

kubectl port-forward "svc/cache-demo-app" "$port:8000" -n "$namespace" >/dev/null 2>&1 &
forward_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 30); do
    curl -fsS --max-time 2 "$base/healthz" >/dev/null 2>&1 && break
    sleep 1
done

passed=0
failed=0
check() { # name, command...
    local name=$1
    shift
    if "$@"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}
x_cache() {
    curl -fsS --max-time 10 -o /dev/null -D - "$base/api/categories" | tr -d '\r' |
        awk 'tolower($1) == "x-cache:" { print $2 }'
}
token=$(kubectl get secret cache-demo-credentials -n "$namespace" --request-timeout=10s \
    -o jsonpath='{.data.admin-token}' | base64 -d)

# Start from an empty cache, so the first read is a miss whatever ran before (KEEP=1).
check "POST /api/flush-cache" curl -fsS --max-time 10 -o /dev/null -X POST -H "Authorization: Bearer $token" \
    "$base/api/flush-cache"
check "first GET /api/categories is a MISS" test "$(x_cache)" = MISS
check "second GET /api/categories is a HIT" test "$(x_cache)" = HIT
ttl=$(timeout 30 kubectl exec "deploy/redis" -n "$namespace" -- redis-cli TTL cache-demo:categories:stats | tr -d '\r')
check "redis-cli TTL cache-demo:categories:stats is positive ($ttl)" test "${ttl:-0}" -gt 0

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
