#!/usr/bin/env bash
# Installs what cache-demo needs to run and test on Debian/Ubuntu: PostgreSQL and Redis servers from the
# distribution (never started as services: the project starts its own throwaway instances), plus the Rust
# components `make test` uses; with --test also Chromium, Node.js and Python's venv for the browser and Kubernetes
# checks, and Prometheus (with promtool) and redis_exporter for the observability tests (--observe: only those two,
# for make observe). Does nothing for what is already there.
set -euo pipefail

have_postgres() {
    command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
have_postgres || missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${1:-}" = "--test" ]; then
    # The dashboard's browser tests: Debian's Chromium driven by Playwright from npm.
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    # make check-k8s: a Python venv for the offline Kubernetes schema and Helm checks (scripts/k8s-check.sh).
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--observe" ]; then
    # The observability tests and make observe: promtool and a throwaway Prometheus, redis_exporter for Redis'
    # own metrics. Debian enables (and may start) the packaged services; they are stopped below.
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "Please install PostgreSQL (server and psql) and Redis (redis-server, redis-cli): missing ${missing[*]}" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "Installing ${missing[*]} from the distribution..."
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The project starts its own throwaway Prometheus and redis_exporter: not the system services.
    for service in prometheus prometheus-redis-exporter; do
        case " ${missing[*]} " in
            *" $service "*)
                if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
                    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
                elif [ -x "/etc/init.d/$service" ]; then
                    $sudo "/etc/init.d/$service" stop >/dev/null 2>&1 || true
                fi
                ;;
        esac
    done
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust from https://rustup.rs" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
