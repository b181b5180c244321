#!/usr/bin/env bash
# What `make deploy` needs on this machine, checked before anything is compiled: one line naming everything
# missing, exit 1; nothing printed when all is there. Bash builtins only.
missing=()
command -v "${CARGO:-cargo}" >/dev/null 2>&1 || missing+=("a Rust toolchain (cargo: https://rustup.rs)")
command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/)")
if ! command -v minikube >/dev/null 2>&1 && ! command -v docker >/dev/null 2>&1 &&
    ! command -v podman >/dev/null 2>&1; then
    missing+=("minikube (https://minikube.sigs.k8s.io), or docker or podman to build the image for another cluster")
fi
if [ ${#missing[@]} -gt 0 ]; then
    joined=$(printf '%s; ' "${missing[@]}")
    echo "make deploy needs: ${joined%; } (README: Deploy to Kubernetes)" >&2
    exit 1
fi
