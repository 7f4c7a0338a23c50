# sml: every target does the set-up it needs, so `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export SML_DATA_DIR ?= $(CURDIR)/.sml-data

.PHONY: install browser stack-up stack-down stack-status run lint test stress bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

# Debian's Chromium for the browser test (Playwright drives it; it never downloads a browser).
browser:
	@command -v chromium >/dev/null || { \
	  test "$$(id -u)" = 0 || { echo "install Debian's chromium (apt-get install chromium) for the browser test" >&2; exit 1; }; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

stack-up:
	$(PYTHON) devstack/stack.py up $(if $(CLUSTER),--cluster)

stack-down:
	$(PYTHON) devstack/stack.py down $(if $(RESET),--reset) $(if $(CLUSTER),--cluster)

stack-status:
	$(PYTHON) devstack/stack.py status $(if $(CLUSTER),--cluster)

run: install stack-up
	$(PY) devstack/run.py

# ruff (lint and format) and pyright, all configured in pyproject.toml; `make test` runs this first.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright --pythonpath $(PY)

# Two pytest sessions side by side, split so that each takes about half the time: the `cluster` tests
# (their own Kafka nodes, DataNodes and Spark workers) and the `launches` tests (Dagster's CLI, daemon,
# webserver and code server as processes) in one, everything else in the other. Both mostly wait on
# JVMs and daemons, and each session checks only its own leftovers. PYTEST_ARGS runs one session instead.
test: install lint browser stack-up
ifeq ($(strip $(PYTEST_ARGS)),)
	@mkdir -p $(SML_DATA_DIR)
	@$(PY) -m pytest -m "cluster or launches" -p no:cacheprovider --durations=15 >$(SML_DATA_DIR)/beside-tests.log 2>&1 & beside=$$!; \
	$(PY) -m pytest -m "not cluster and not launches" --durations=25; rest=$$?; \
	wait $$beside; besiderc=$$?; \
	echo "---- cluster and launches tests (pytest -m 'cluster or launches'), run beside the rest:"; cat $(SML_DATA_DIR)/beside-tests.log; \
	test $$rest -eq 0 && test $$besiderc -eq 0
else
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)
endif

# Crash trials: SML_STRESS_TRIALS (default 20) killed server_metrics runs and SML_STRESS_LOG_TRIALS
# (default 5) killed log_summary runs, seeded from SML_STRESS_SEED (default 1000).
stress: install stack-up
	$(PY) -m pytest -m stress $(PYTEST_ARGS)

# Speed and memory against the running stack: one table, JSON in benchmarks/results/ (QUICK=1: ~4 min).
bench: install stack-up
	$(PY) benchmarks/run_all.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache
