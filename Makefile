# c360 — every target does its own set-up (venv, Python packages, JVM jars) on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help setup browser demo test test-cluster lint bench chaos kafka-start kafka-stop clean

help:
	@echo "make demo   - the whole pipeline on a local Kafka broker and local Delta tables"
	@echo "make test   - the whole test suite (real Kafka, Spark and Delta)"
	@echo "make test-cluster - c360 on a Spark standalone cluster started on localhost (not in make test)"
	@echo "make bench  - speed and memory figures -> bench/results/latest.json"
	@echo "make chaos  - kill -9 the stream 20 times across a 1M-event replay: lost=0 duplicated=0 (~40 min)"
	@echo "make lint   - ruff"
	@echo "make setup  - venv + packages + JVM jars (the other targets run it)"
	@echo "make browser - headless Chromium for the dashboard tests (make test runs it)"
	@echo "make clean  - remove generated data, lake, checkpoints and broker state and Spark scratch (keeps venv and jars)"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "c360 needs Python >= 3.10 (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	@command -v java >/dev/null || { echo "java not found: install a Java 17 JDK (apt-get install openjdk-17-jdk-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "mvn not found: install Apache Maven (apt-get install maven)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(VENV)/.installed
	$(BIN)/c360 setup

demo: setup
	$(BIN)/c360 demo

# The dashboard tests drive headless Chromium (Debian's chromium + chromium-driver); the TLS test makes its
# certificates with openssl. Installed when missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v openssl >/dev/null; then \
	  exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "the tests need Chromium, ChromeDriver and openssl on PATH (chromium, chromedriver, openssl): install them"; \
	  exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "the tests need Chromium and openssl: run 'apt-get install chromium chromium-driver openssl' as root"; \
	  exit 1; fi; \
	echo "installing Chromium, ChromeDriver and openssl for the tests (apt-get: chromium chromium-driver openssl)"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  chromium chromium-driver openssl >/dev/null && echo "installed $$(chromium --version 2>/dev/null)"

# Two pytest workers: much of a test's time is waiting (JVM start-up, Delta commits, a broker restarting), so
# two overlap well on two cores; three were slower on this 2-core machine (14.0 min of pytest against 12.2, one run
# each, 2026-11-24: the suite is CPU-bound). The tests sharing the streamed lake run on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
test: setup lint browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

# The standalone-cluster test (tests/integration/test_cluster.py): a Spark master and worker started on localhost,
# `c360 stream` and `c360 gold` on them against a local run. Skipped by make test (its 15-minute budget); about 4 min.
test-cluster: setup
	C360_TEST_CLUSTER=1 $(BIN)/pytest tests/integration/test_cluster.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.run

chaos: setup
	$(BIN)/python -m bench.chaos

kafka-start: setup
	$(BIN)/c360 kafka start

kafka-stop: $(VENV)/.installed
	$(BIN)/c360 kafka stop

clean:
	-$(BIN)/c360 kafka stop 2>/dev/null
	rm -rf data lake demo exports dashboard.html test-artifacts spark-warehouse .c360/kafka .c360/replay .c360/scratch .c360/spark-warehouse
	find checkpoints -mindepth 1 ! -name README.md -exec rm -rf {} +
