# One entry point for people and CI: `make run` serves, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint services tools train run bench clean

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

test: lint services tools
	$(PY) -m pytest

run: install
	$(PY) -m devstack.run_local

train: install
	$(PY) -m training.train

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

bench: install services
	$(PY) -m bench.run --record
