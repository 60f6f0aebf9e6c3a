# edgebook: `make run` starts JupyterLab with edgebook; `make test` runs every suite.
# Both set up what they need on first use: a project virtualenv (.venv), the package with
# its extras, the JupyterLab extension built from source, and the SDK's dependencies
# pre-built into the shared cargo target dir.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PREBUILT := $(VENV)/.prebuilt-stamp
JUPYTER_STAMP := $(VENV)/.jupyter-stamp
export EDGEBOOK_TARGET_DIR ?= $(HOME)/.cache/edgebook/target

.PHONY: setup run serve test test-python test-sdk bench clean

setup: $(PREBUILT) $(JUPYTER_STAMP)

# The package is installed editable without its build hooks: the labextension is built
# below with the venv's own jlpm (a wheel build runs the same step through the hook).
$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("edgebook needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	HATCH_BUILD_NO_HOOKS=true $(PY) -m pip install --quiet -e '.[all,test]'
	touch $@

include labextension/labextension.mk

$(PREBUILT): $(STAMP) $(wildcard sdk/Cargo.toml sdk/Cargo.lock sdk/src/*.rs)
	$(VENV)/bin/edgebook prebuild
	touch $@

# JupyterLab in the venv loads the extension built from this checkout, and Jupyter Server
# starts edgebook's server extension (what a wheel install gets from its shared data).
$(JUPYTER_STAMP): $(STAMP) $(LABEXT_BUILT)
	$(LABEXT_PATH) jupyter labextension develop --overwrite . >/dev/null
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp jupyter-config/jupyter_server_config.d/edgebook.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $@

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

run: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

serve: setup
	$(VENV)/bin/edgebook serve

test: setup test-python test-sdk test-labextension test-ui

test-python: setup
	$(PY) -m pytest -q

test-sdk:
	cargo test --quiet --manifest-path sdk/Cargo.toml --workspace

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .edgebook sdk/target edgebook/labextension labextension/node_modules labextension/lib
