#!/usr/bin/env bash
# Offline checks of the Kubernetes manifests (scripts/k8s-check.py): deploy/ and the Helm chart validated
# against the Kubernetes schemas, the chart linted, and the chart's objects compared with `cache-demo-ctl
# render`. Creates a Python venv with pinned packages under target/k8s-venv on first use (~400 MB, kept).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${K8S_VENV:-target/k8s-venv}
requirements=scripts/k8s-requirements.txt

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/.requirements"; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        echo "k8s-check: cannot create a Python venv: install python3-venv (make deps does)" >&2
        exit 1
    fi
    echo "k8s-check: installing $(grep -c '==' "$requirements") pinned packages into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --timeout 60 --retries 3 \
        -r "$requirements"
    cp "$requirements" "$venv/.requirements"
fi
exec "$venv/bin/python" scripts/k8s-check.py "$@"
