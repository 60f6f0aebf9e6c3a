# edgebook: `make run` starts JupyterLab with edgebook; `make test` runs every suite.
# Both set up what they need on first use: a project virtualenv (.venv), the package with
# its extras, the JupyterLab extension built from source, and the SDK's dependencies
# pre-built into the shared cargo target dir.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := .[all,test]
PREBUILT := $(VENV)/.prebuilt-stamp
JUPYTER_STAMP := $(VENV)/.jupyter-stamp
export EDGEBOOK_TARGET_DIR ?= $(HOME)/.cache/edgebook/target

# Setup steps print one line each (what, how long); their full output goes to a log file
# under $(LOGS) that a failure names.
LOGS := .setup-logs
define step
	@mkdir -p $(LOGS); printf '%-58s' "$(1)"; start=$$(date +%s); \
	if ( $(2) ) > $(LOGS)/$(3).log 2>&1; then echo "done ($$(( $$(date +%s) - start )) s)"; \
	else echo "FAILED"; tail -n 25 $(LOGS)/$(3).log; \
	echo "make: $(1) failed; the whole log is $(LOGS)/$(3).log"; exit 1; fi
endef

# Suites skipped for want of an optional component (Chromium, PostgreSQL, Redis, ...) write a
# line here; `make test` ends by printing them. CI (.ci/run) sets EDGEBOOK_REQUIRE_SERVICES=1,
# which turns every such skip into a failure.
export EDGEBOOK_SKIP_REPORT := $(CURDIR)/$(LOGS)/skipped.txt

.PHONY: setup run serve test test-reset test-python test-sdk bench deploy-manifests helm clean

setup: $(PREBUILT) $(JUPYTER_STAMP)

# The package is installed editable without its build hooks: the labextension is built
# below with the venv's own jlpm (a wheel build runs the same step through the hook).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("edgebook needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	$(call step,virtualenv $(VENV),test -x $(PY) || $(PYTHON) -m venv $(VENV),venv)
	$(call step,pip: edgebook with its extras (first time: minutes),$(PY) -m pip install --upgrade pip && HATCH_BUILD_NO_HOOKS=true $(PY) -m pip install -e '$(EXTRAS)',pip)
	@touch $@

include labextension/labextension.mk

$(PREBUILT): $(STAMP) $(wildcard sdk/Cargo.toml sdk/Cargo.lock sdk/src/*.rs)
	$(call step,cargo: the SDK's dependencies (first time: minutes),$(VENV)/bin/edgebook prebuild,prebuild)
	@touch $@

# JupyterLab in the venv loads the extension built from this checkout, and Jupyter Server
# starts edgebook's server extension (what a wheel install gets from its shared data).
# JupyterLab's own news and update prompts are off in the project's JupyterLab.
$(JUPYTER_STAMP): $(STAMP) $(LABEXT_BUILT) $(wildcard jupyter-config/*/*.json)
	$(call step,jupyter: the extension and the project's settings,$(LABEXT_PATH) jupyter labextension develop --overwrite . && mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d $(VENV)/share/jupyter/lab/settings && cp jupyter-config/jupyter_server_config.d/edgebook.json $(VENV)/etc/jupyter/jupyter_server_config.d/ && cp jupyter-config/lab-settings/overrides.json $(VENV)/share/jupyter/lab/settings/,jupyter)
	@touch $@

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# Opens the quick-start notebook (not the Launcher).
run: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks \
		--LabApp.default_url=/lab/tree/01-quick-start.ipynb $(ALLOW_ROOT)

serve: setup
	$(VENV)/bin/edgebook serve

test: setup test-reset test-python test-sdk test-labextension test-ui
	@$(PY) tools/test_summary.py $(EDGEBOOK_SKIP_REPORT)

test-reset:
	@mkdir -p $(LOGS); rm -f $(EDGEBOOK_SKIP_REPORT)

test-python: setup
	$(PY) -m pytest -q

SDK_MANIFEST := sdk/Cargo.toml

# rustfmt and clippy are rustup components; without them (and no way to install them, e.g.
# offline) the check says so in one line and is skipped, the tests still run.
define sdk_component
	@cargo $(1) --version >/dev/null 2>&1 || { command -v rustup >/dev/null \
		&& timeout 120 rustup component add $(2) >/dev/null 2>&1; } || true
	@if cargo $(1) --version >/dev/null 2>&1; then $(3); \
	else echo "test-sdk: SKIPPED cargo $(1): the $(2) component is not installed and could not be added (rustup component add $(2))" | tee -a $(EDGEBOOK_SKIP_REPORT); \
		if [ "$$EDGEBOOK_REQUIRE_SERVICES" = 1 ]; then exit 1; fi; fi
endef

test-sdk:
	cargo test --quiet --manifest-path $(SDK_MANIFEST) --workspace
	cargo test --quiet --manifest-path $(SDK_MANIFEST) -p edgebook-sdk --features http --test http_types --lib
	cargo test --quiet --manifest-path $(SDK_MANIFEST) -p edgebook-sdk --features http --doc http_types
	$(call sdk_component,fmt,rustfmt,cargo fmt --manifest-path $(SDK_MANIFEST) --all --check)
	$(call sdk_component,clippy,clippy,cargo clippy --quiet --manifest-path $(SDK_MANIFEST) --workspace --all-targets --all-features -- -D warnings)

bench: setup
	$(PY) bench/run.py
	$(PY) bench/timing_bench.py
	$(PY) bench/sample_store_bench.py
	$(PY) bench/scaleout_bench.py

# deploy/manifests: the Helm chart (deploy/chart/edgebook) rendered with its default values
deploy-manifests: $(STAMP)
	$(PY) -m edgebook.k8s --write

# Helm, for tests/test_k8s.py's check that `helm lint` passes and `helm template` gives the
# renderer's objects. Optional for `make test` (skipped, with a line, without it); .ci/run
# builds it. Needs Go (the version comes from the Go module proxy).
HELM_VERSION := v4.3.2
HELM := .tools/bin/helm
helm: $(HELM)
$(HELM):
	$(call step,helm $(HELM_VERSION) (go install; first time: minutes),GOBIN=$(CURDIR)/.tools/bin go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION),helm)

clean:
	rm -rf $(VENV) $(LOGS) .tools .edgebook sdk/target edgebook/labextension labextension/node_modules labextension/lib
