# One entry point for people and CI: `make run` serves, `make test` checks everything, `make check` is the fast
# tier (lint, types and the tests that start no server and score no whole table: about two minutes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test check lint services tools bench-peers train run bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

services:
	scripts/ensure-services

tools:
	scripts/ensure-tools

# The bench's BentoML peer lives in a venv of its own (var/peers/bentoml-venv), made here once and kept while
# its requirements hold, so that no test installs anything.
bench-peers: install
	$(PY) -m bench.peers.venv

# Its prerequisites run side by side (lint beside the BentoML venv's install), then the suite.
test: install
	$(MAKE) --no-print-directory --jobs=3 lint services tools bench-peers
	$(PY) -m pytest

# Tests marked stack (they start servers) or slow are left out; TESTS_START_NO_SERVER=1 fails any that would
# start one anyway. Some still talk to the local Postgres and Redis: services starts them when they are down.
check: lint services
	TESTS_START_NO_SERVER=1 $(PY) -m pytest -m "not stack and not slow"

run: install
	$(PY) -m devstack.run_local

train: install
	$(PY) -m training.train

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

bench: install services
	$(PY) -m bench.run --record
