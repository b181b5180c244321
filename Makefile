# cache-demo: `make run` for the local demo, `make test` for every check CI runs.
CARGO ?= cargo
# `make run PROFILE=debug` for a faster first build; release shows realistic timings.
PROFILE ?= release
PROFILE_FLAG := $(if $(filter release,$(PROFILE)),--release,)
TARGET_DIR := target/$(if $(filter release,$(PROFILE)),release,debug)

.PHONY: help deps test-deps run build test fmt lint unit test-browser bench observe

BROWSER_TESTS := crates/app/tests/browser

help:
	@echo "make run     start throwaway PostgreSQL + Redis and the app on http://127.0.0.1:8000 (Ctrl-C stops all)"
	@echo "make test    format check, clippy -D warnings, and every test (real PostgreSQL, Redis and Chromium)"
	@echo "make bench   database vs cache, hit ratio, the app against reference servers, the bar (~4 min); writes docs/benchmarks.md"
	@echo "make observe make run plus redis_exporter and Prometheus with the alerting rules on http://127.0.0.1:9090"
	@echo "make deps    install PostgreSQL, Redis and Rust components if missing (Debian/Ubuntu)"
	@echo "make deploy  build the image where minikube runs it and deploy everything (then: make port-forward)"
	@echo "make deploy-operator  the same as an operator: a CacheDemo resource kept true (kubectl get cachedemo -n redis-demo)"
	@echo "make render  regenerate deploy/ (and the chart's copy of init.sql); make check-k8s validates them and the chart"
	@echo "make e2e     the deployed demo against a live cluster (skips when none is reachable)"

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build:
	$(CARGO) build $(PROFILE_FLAG) -p cache-demo -p cache-demo-testkit

run: deps build
	$(TARGET_DIR)/cache-demo-stack -- $(TARGET_DIR)/cache-demo

# Always release: debug timings mean nothing. The bench starts the app itself (twice: L1 off, then on), runs the
# standard scenario against it, measures it against its own reference servers (cache-demo-ref: a static handler and
# one Redis GET) in turns, and rewrites the measured part of docs/benchmarks.md.
bench: deps
	$(CARGO) build --release -p cache-demo -p cache-demo-testkit -p cache-demo-bench
	target/release/cache-demo-stack -- target/release/cache-demo-bench --spawn-app target/release/cache-demo \
		--reference target/release/cache-demo-ref \
		--scenario standard --app-log target/bench-app.log --markdown-out docs/benchmarks.md

fmt:
	$(CARGO) fmt --all

lint:
	@# The image builds with --locked: Cargo.lock must match the workspace.
	$(CARGO) metadata --locked --format-version 1 > /dev/null
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --lib --bins

# The dashboard end to end in headless Chromium (Playwright); saves target/dashboard.png.
test-browser:
	$(CARGO) build -p cache-demo -p cache-demo-testkit
	cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --silent
	node --test $(BROWSER_TESTS)/

# The browser tests, also saving a picture of each experiment into docs/screenshots/ (README "Experiments").
.PHONY: screenshots
screenshots:
	SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(MAKE) test-browser

test: test-deps lint check-k8s
	$(CARGO) test --workspace
	$(MAKE) test-browser

# --- Kubernetes (minikube): README "Deploy to Kubernetes". cache-demo-ctl reads the usual kubeconfig.
IMAGE ?= cache-demo-app:latest
NAMESPACE ?= redis-demo
# Extra cache-demo-ctl options for deploy/status, e.g. CTL_FLAGS="--db-delay-ms 200 --replicas 2".
CTL_FLAGS ?=
# make e2e OPERATOR=1: the end-to-end check in operator mode.
OPERATOR ?= 0
CTL := target/debug/cache-demo-ctl

.PHONY: ctl build-ctl image deploy deploy-operator undeploy status port-forward redis-cli psql logs render check-render check-k8s e2e

# cache-demo-ctl first (about a minute the first time, with cargo's progress), so a missing tool or an
# unreachable cluster is said before the image build, which takes minutes.
ctl:
	@CARGO=$(CARGO) scripts/deploy-preflight.sh
	@$(MAKE) --no-print-directory build-ctl

build-ctl:
	$(CARGO) build -p cache-demo-ctl

# Builds the image where the cluster's node can run it (minikube image build, or minikube's Docker with buildx).
image: ctl
	$(CTL) image --image $(IMAGE)

# Builds the image, then applies everything with the image's ID in the app's pod template: a changed image rolls
# the app, an unchanged one changes nothing.
deploy: ctl
	$(CTL) up --build --namespace $(NAMESPACE) --image $(IMAGE) $(CTL_FLAGS)

# Operator mode: the CacheDemo CRD, the operator (same image) with its RBAC, and a CacheDemo with CTL_FLAGS' options;
# the operator deploys PostgreSQL, Redis and the app and keeps them true.
deploy-operator: ctl
	$(CTL) up --operator --build --namespace $(NAMESPACE) --image $(IMAGE) $(CTL_FLAGS)

undeploy: build-ctl
	$(CTL) down --namespace $(NAMESPACE)

status: build-ctl
	$(CTL) status --namespace $(NAMESPACE) --image $(IMAGE) $(CTL_FLAGS)

port-forward:
	kubectl port-forward svc/cache-demo-app 8000:8000 -n $(NAMESPACE)

redis-cli:
	kubectl exec -it deploy/redis -n $(NAMESPACE) -- redis-cli

psql:
	kubectl exec -it deploy/postgres -n $(NAMESPACE) -- psql -U postgres cache_demo

logs:
	kubectl logs -f -l app.kubernetes.io/name=cache-demo-app -n $(NAMESPACE) --prefix --tail 100 --max-log-requests 20

# deploy/ is generated: the objects of `cache-demo-ctl render` (placeholder Secret values) and a kustomization.
# The chart carries its own copy of init.sql (a chart must be complete without the repository around it).
CHART_INIT_SQL := charts/cache-demo/files/init.sql
# ... and of the CacheDemo CRD (crds/: Helm installs it before the templates).
CHART_CRD := charts/cache-demo/crds/cachedemos.yaml
# ... and of the Prometheus rules and the Grafana dashboard (monitoring.* values).
CHART_COPIES := observability/prometheus/cache-demo.rules.yml observability/grafana/cache-demo.json \
	least-privilege/app-role.sql least-privilege/redis-acl.txt

render: build-ctl
	$(CTL) render --out-dir deploy
	rm -f $(CHART_INIT_SQL) && cp init.sql $(CHART_INIT_SQL)
	cp deploy/operator/crd.yaml $(CHART_CRD)
	cp $(CHART_COPIES) charts/cache-demo/files/

check-render:
	$(CARGO) build --quiet -p cache-demo-ctl
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	target/debug/cache-demo-ctl render --out-dir "$$tmp" >/dev/null && \
	if ! diff -r "$$tmp" deploy; then echo "deploy/ is stale: run make render" >&2; exit 1; fi && \
	echo "deploy/ is what cache-demo-ctl render produces" && \
	if [ -L $(CHART_INIT_SQL) ] || ! cmp -s init.sql $(CHART_INIT_SQL); then \
		echo "$(CHART_INIT_SQL) must be a copy of init.sql, not a link: run make render" >&2; exit 1; fi && \
	echo "$(CHART_INIT_SQL) is a copy of init.sql" && \
	if ! cmp -s deploy/operator/crd.yaml $(CHART_CRD); then \
		echo "$(CHART_CRD) must be a copy of deploy/operator/crd.yaml: run make render" >&2; exit 1; fi && \
	echo "$(CHART_CRD) is the CRD of cache-demo-ctl" && \
	for f in $(CHART_COPIES); do \
		if ! cmp -s $$f charts/cache-demo/files/$$(basename $$f); then \
			echo "charts/cache-demo/files/$$(basename $$f) must be a copy of $$f: run make render" >&2; exit 1; fi; \
	done && echo "the chart's rules, dashboard and least-privilege files are copies of the repository's"

# Schemas, Helm lint, chart == render; offline, in a venv under target/ (scripts/k8s-check.sh).
check-k8s: check-render
	scripts/k8s-check.sh --ctl target/debug/cache-demo-ctl

e2e:
	IMAGE=$(IMAGE) NAMESPACE=$(NAMESPACE) OPERATOR=$(OPERATOR) scripts/e2e.sh

# --- Observability (docs/observability.md): make run, plus redis_exporter and a throwaway Prometheus with
# observability/prometheus/cache-demo.rules.yml loaded, scraping the app and the exporter every 5 s.
# PROMETHEUS_PORT=9091 make observe if 9090 is taken.
observe: deps build
	@scripts/install-deps.sh --observe
	$(TARGET_DIR)/cache-demo-stack --observe -- $(TARGET_DIR)/cache-demo
