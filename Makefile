# Both targets bootstrap .venv on first use (and again when pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# `make fuzz`: a seeded mix of valid and hostile inputs and malformed HTTP requests against a
# live worker, and the accounting of every one (tests/fuzz.py); exit 1 on any loss or leak.
.PHONY: demo test lint fuzz bench bench-engine bench-engine-instructions bench-pipeline bench-dispatch bench-latency bench-memory bench-lateness bench-lanes bench-versions clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The preference-page test drives a real browser: Debian's chromium and its driver.
BROWSER := /usr/bin/chromedriver
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BROWSER):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium chromium-driver >/dev/null \
	|| ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null)

# Apache Kafka's own broker in the tests (tests/apache_kafka) runs on a JDK and is fetched by Maven.
JAVA_TOOLS := /usr/bin/java /usr/bin/mvn

$(JAVA_TOOLS):
	command -v java >/dev/null && command -v mvn >/dev/null \
	|| $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		openjdk-17-jre-headless maven >/dev/null \
	|| ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven >/dev/null)

# kustomize renders deploy/k8s in the tests (tests/unit/test_kubernetes.py); built from the Go
# module proxy into the venv, with the machine's Go (1.22 or newer).
GO        ?= $(shell command -v go || echo /usr/local/go/bin/go)
KUSTOMIZE := $(BIN)/kustomize

$(KUSTOMIZE): | $(STAMP)
	GOBIN=$(abspath $(BIN)) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1

demo: $(STAMP)
	$(BIN)/clarion demo

test: $(STAMP) $(BROWSER) $(JAVA_TOOLS) $(KUSTOMIZE) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict schemas policies channels streams
	$(BIN)/lint-imports
	$(BIN)/hadolint deploy/Dockerfile

fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz --inputs $(or $(INPUTS),10000) --http $(or $(HTTP),200) \
		--seed $(or $(SEED),1)

# Benchmarks print figures (docs/performance.md); they assert nothing about speed.
bench-engine: $(STAMP)
	$(BIN)/python -m tests.benchmarks.engine --customers $(or $(CUSTOMERS),100000)

bench-engine-instructions: $(STAMP)
	$(BIN)/python -m tests.benchmarks.engine_instructions --customers $(or $(CUSTOMERS),1000)

bench-pipeline: $(STAMP)
	$(BIN)/python -m tests.benchmarks.pipeline --customers $(or $(CUSTOMERS),5000)

bench-dispatch: $(STAMP)
	$(BIN)/python -m tests.benchmarks.dispatch

bench-latency: $(STAMP)
	$(BIN)/python -m tests.benchmarks.latency --rate $(or $(RATE),1000) $(if $(APART),--apart) \
		$(if $(LINGER),--linger-ms $(LINGER))

bench-memory: $(STAMP)
	$(BIN)/python -m tests.benchmarks.memory --cases $(or $(CASES),100000) --store memory rocksdb

bench-lateness: $(STAMP)
	$(BIN)/python -m tests.benchmarks.lateness --pending $(or $(PENDING),1000000)

bench-versions: $(STAMP)
	$(BIN)/python -m tests.benchmarks.versions --customers $(or $(CUSTOMERS),100000)

bench-lanes: $(STAMP)
	$(BIN)/python -m tests.benchmarks.lanes --customers $(or $(CUSTOMERS),100000) \
		--seconds $(or $(SECONDS),60)

bench: bench-engine bench-pipeline bench-dispatch bench-latency bench-memory bench-lateness \
	bench-lanes bench-versions

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
