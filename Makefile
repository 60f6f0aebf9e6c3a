# edgebook: `make run` starts JupyterLab with edgebook; `make test` runs every suite.
# Both set up what they need on first use: a project virtualenv (.venv), the package with
# its extras, and the SDK's dependencies pre-built into the shared cargo target dir.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PREBUILT := $(VENV)/.prebuilt-stamp
export EDGEBOOK_TARGET_DIR ?= $(HOME)/.cache/edgebook/target

.PHONY: setup run serve test test-python test-sdk fuzz bench clean

setup: $(PREBUILT)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("edgebook needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $@

$(PREBUILT): $(STAMP) $(wildcard sdk/Cargo.toml sdk/Cargo.lock sdk/src/*.rs)
	$(VENV)/bin/edgebook prebuild
	touch $@

run: setup
	$(VENV)/bin/edgebook serve

test: setup test-python test-sdk

test-python: setup
	$(PY) -m pytest -q

test-sdk:
	cargo test --quiet --manifest-path sdk/Cargo.toml

# Long fuzz runs (minutes): the SDK's frame reader and the Python codec and header checks.
fuzz: setup
	EDGEBOOK_FUZZ_ITERATIONS=2000000 cargo test --quiet --release --manifest-path sdk/Cargo.toml --test fuzz
	EDGEBOOK_FUZZ_LONG=1 $(PY) -m pytest -q tests/test_fuzz.py

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .edgebook sdk/target
