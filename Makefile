# cache-demo: `make run` for the local demo, `make test` for every check CI runs.
CARGO ?= cargo
# `make run PROFILE=debug` for a faster first build; release shows realistic timings.
PROFILE ?= release
PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)
TARGET_DIR := target/$(if $(filter release,$(PROFILE)),release,debug)

.PHONY: help deps run build test fmt lint unit test-browser

BROWSER_TESTS := crates/app/tests/browser

help:
	@echo "make run     start throwaway PostgreSQL + Redis and the app on http://127.0.0.1:8000 (Ctrl-C stops all)"
	@echo "make test    format check, clippy -D warnings, and every test (real PostgreSQL, Redis and Chromium)"
	@echo "make deps    install PostgreSQL, Redis and Rust components if missing (Debian/Ubuntu)"

deps:
	@scripts/install-deps.sh

build:
	$(CARGO) build $(PROFILE_FLAG) -p cache-demo -p cache-demo-testkit

run: deps build
	$(TARGET_DIR)/cache-demo-stack -- $(TARGET_DIR)/cache-demo

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins

# The dashboard end to end in headless Chromium (Playwright); saves target/dashboard.png.
test-browser:
	$(CARGO) build -p cache-demo -p cache-demo-testkit
	cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --silent
	node --test $(BROWSER_TESTS)/

test: deps lint
	$(CARGO) test --workspace
	$(MAKE) test-browser
