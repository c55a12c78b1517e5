# Every target creates .venv and installs signdb into it when missing or stale,
# so each one is the only command a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SIGNDB_DATASET_DIR ?= $(abspath $(CURDIR)/../shared/datasets/sign-language-digits/Dataset)

.PHONY: demo test test-pg15 bench lint format clean browser screenshots

# `make demo` installs the core package only: what a user needs for the demo,
# without PyTorch (gigabytes as a CUDA build) or the test tools.
DEMO_STAMP := $(VENV)/.installed-core
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

# The torch extra is part of the test install. torch==2.13.0 first: on this
# project's machines that is the CPU build on local disk, where a bare range
# would fetch a CUDA build of several GB; the extra's range then installs nothing more.
# Elsewhere, for the CPU build: make test TORCH="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,torch]'
	touch $(STAMP) $(DEMO_STAMP)

# MLflow and scikit-learn are only needed to compare against; keep them out of demo/test.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/signdb demo

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Test tools from Debian: Chromium for the browser tests (the report and the web UI),
# zsh for the docs' zsh blocks. Installed when we can (root with apt); otherwise the
# tests that need them say what is missing.
TEST_TOOLS := chromium zsh
browser:
	@missing=""; for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
		echo "note:$$missing not installed; the tests that need them will say so"

# The database tests again, against another server (default: the local PostgreSQL 15).
PG15_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
test-pg15: $(STAMP)
	SIGNDB_TEST_DATABASE_URL=$(PG15_URL) $(BIN)/python -m pytest -q tests/db tests/cli

# The web UI's pictures in docs/images/, from a generated dataset of shapes.
screenshots: $(STAMP) browser
	$(BIN)/python docs/screenshots.py

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests migrations bench examples docs/screenshots.py
	$(BIN)/ruff format --check src tests migrations bench examples docs/screenshots.py

format: $(STAMP)
	$(BIN)/ruff format src tests migrations bench examples docs/screenshots.py
	$(BIN)/ruff check --fix src tests migrations bench examples docs/screenshots.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
