# omsframe: every target sets up what it needs itself (only Python 3.11+ and make required).
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
UV_VERSION := 0.13.8
VENV := .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
# compile every installed module to bytecode at install time, as pip does and uv does not by
# default: where PYTHONDONTWRITEBYTECODE is set (many Docker images, the machines this project
# is built on) every process would otherwise compile each module it imports from source, every
# time (`import omsframe, httpx, pandas`: 3.3 s instead of 0.8; a sync's worker ready in 0.57 s
# instead of 0.17; see BENCHMARKS.md "Sync")
export UV_COMPILE_BYTECODE := 1
RUN := $(UV) run --frozen --no-sync

.PHONY: help setup demo test test-slow lint format lab bench reliability clean

help:
	@echo "make demo    sync the built-in OMS simulator's shop into data/demo/ and show the report"
	@echo "             (run it again for an incremental sync)"
	@echo "make test    lint (ruff), type-check (mypy) and run the tests (pytest)"
	@echo "make test-slow    the tests marked slow (left out of make test)"
	@echo "make lab     open JupyterLab on notebooks/"
	@echo "make bench   run the benchmarks (results go in BENCHMARKS.md by hand)"
	@echo "make lint    ruff and mypy only"
	@echo "make format  ruff format and the safe fixes"
	@echo "make reliability  the fault campaign (figures for RELIABILITY.md)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --python $(PYTHON) --extra lab
	$(VENV)/bin/python -m compileall -q omsframe bench tests
	@touch $@

setup: $(VENV)/.synced

demo: setup
	$(RUN) omsframe demo

lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

test: lint
	@bash .ci/ensure-chromium
	$(RUN) pytest -n 2

test-slow: setup
	$(RUN) pytest -m slow

lab: setup
	@test -f data/demo/manifest.json || $(RUN) omsframe demo
	$(RUN) jupyter lab notebooks/

bench: setup
	$(UV) sync --frozen --python $(PYTHON) --extra lab --group bench
	$(RUN) python -m bench.simulator_throughput
	$(RUN) python -m bench.client_paging
	$(RUN) python -m bench.flatten_compare
	$(RUN) python -m bench.sync_compare
	$(RUN) python -m bench.events_sync
	$(RUN) python -m bench.analysis_revenue

reliability: setup
	$(RUN) python -m tests.reliability --runs 50

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
