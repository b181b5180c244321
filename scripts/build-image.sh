#!/usr/bin/env bash
# Builds the cache-demo image from Containerfile where the cluster can run it without a registry:
# - minikube with the docker runtime: inside minikube's Docker (`eval $(minikube docker-env)`), so the image is
#   on the node at once;
# - minikube with another runtime: `minikube image build`;
# - no minikube: podman, else docker, on this machine (push it or load it into your cluster yourself).
# IMAGE names the image (default cache-demo-app:latest). The build needs BuildKit (cache mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:-cache-demo-app:latest}

minikube_running() {
    command -v minikube >/dev/null 2>&1 && [ "$(minikube status --format '{{.Host}}' 2>/dev/null)" = Running ]
}

if minikube_running; then
    if command -v docker >/dev/null 2>&1 && docker_env=$(minikube docker-env --shell bash 2>/dev/null); then
        eval "$docker_env"
        echo "Building $image inside minikube's Docker ($DOCKER_HOST)"
        DOCKER_BUILDKIT=1 docker build -f Containerfile -t "$image" .
    else
        echo "Building $image with minikube image build"
        minikube image build -f Containerfile -t "$image" .
    fi
elif command -v podman >/dev/null 2>&1; then
    echo "Building $image with podman (no running minikube: make it reachable to your cluster yourself)"
    podman build -f Containerfile -t "$image" .
elif command -v docker >/dev/null 2>&1; then
    echo "Building $image with docker (no running minikube: make it reachable to your cluster yourself)"
    DOCKER_BUILDKIT=1 docker build -f Containerfile -t "$image" .
else
    echo "make image needs a running minikube (minikube start), podman or docker" >&2
    exit 1
fi
