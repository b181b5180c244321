#!/usr/bin/env bash
# End to end against a live Kubernetes cluster (minikube): build the image where the node runs it and
# `cache-demo-ctl up` with its ID (what `make deploy` does); check that the app's pods run that image; then
# through a port-forward: GET /api/categories twice (MISS, then HIT), and in Redis (redis-cli, as the README shows)
# the key in `KEYS *`, its TTL and `INFO memory`.
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
cargo build --quiet -p cache-demo-ctl
id_file=$(mktemp)
timeout 1800 "$ctl" image --image "$image" --id-file "$id_file"
image_id=$(cat "$id_file")
rm -f "$id_file"
[ -n "$image_id" ] || { echo "e2e: cache-demo-ctl image printed no image ID" >&2; exit 1; }

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

# OPERATOR=1: operator mode (make deploy-operator) instead of the direct apply.
mode=()
[ "${OPERATOR:-0}" = 1 ] && mode=(--operator)
timeout 600 "$ctl" up ${mode[@]+"${mode[@]}"} --namespace "$namespace" --image "$image" --image-id "$image_id" --timeout 540

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
redis() { timeout 30 kubectl exec "deploy/redis" -n "$namespace" -- redis-cli "$@" | tr -d '\r'; }
check "redis-cli KEYS * lists cache-demo:categories:stats" grep -qx 'cache-demo:categories:stats' <<<"$(redis KEYS '*')"
ttl=$(redis TTL cache-demo:categories:stats)
# The README: TTLs start between 54 and 66 s (60 s, spread by up to 10%).
check "redis-cli TTL cache-demo:categories:stats is within 1-66 ($ttl)" test "${ttl:-0}" -ge 1 -a "${ttl:-0}" -le 66
memory=$(redis INFO memory)
check "INFO memory: maxmemory:67108864" grep -qx 'maxmemory:67108864' <<<"$memory"
check "INFO memory: maxmemory_policy:allkeys-lru" grep -qx 'maxmemory_policy:allkeys-lru' <<<"$memory"

# The pods run the image just built: their template carries its ID, and where the runtime reports the image by
# its ID, that is the same one.
pods=$(kubectl get pods -n "$namespace" -l app.kubernetes.io/name=cache-demo-app --request-timeout=10s \
    -o jsonpath='{range .items[*]}{.metadata.annotations.cache-demo/image-id} {.status.containerStatuses[0].imageID}{"\n"}{end}')
check "app pods exist" test -n "$pods"
while read -r annotated running; do
    [ -n "$annotated" ] || [ -n "$running" ] || continue
    check "pod template has image $image_id ($annotated)" test "$annotated" = "$image_id"
    case $running in
    *sha256:*) [ "${running##*sha256:}" = "${image_id##*:}" ] && echo "ok   pod runs $running" ||
        echo "note pod reports $running (a repository digest, not the build's ID)" ;;
    esac
done <<<"$pods"

if [ "${OPERATOR:-0}" = 1 ]; then
    ready() {
        kubectl get cachedemo demo -n "$namespace" --request-timeout=10s \
            -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null
    }
    check "cachedemo/demo is Ready" test "$(ready)" = True
    kubectl delete deploy/redis -n "$namespace" --request-timeout=10s --wait=false >/dev/null
    back=no
    for _ in $(seq 1 60); do
        if kubectl get deploy/redis -n "$namespace" --request-timeout=5s >/dev/null 2>&1; then back=yes && break; fi
        sleep 1
    done
    check "the operator recreates a deleted deploy/redis" test "$back" = yes
    kubectl rollout status deploy/redis -n "$namespace" --timeout=180s >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do [ "$(ready)" = True ] && break; sleep 2; done
    check "cachedemo/demo is Ready again" test "$(ready)" = True
fi

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
