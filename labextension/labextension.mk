# The JupyterLab extension, built from source with jlpm (from the project's JupyterLab).
# Include from the top-level Makefile after VENV and STAMP are defined:
#     include labextension/labextension.mk
# Output: edgebook/labextension/ (git-ignored), which the wheel ships as
# share/jupyter/labextensions/@edgebook/labextension.

LABEXT := labextension
LABEXT_BUILT := edgebook/labextension/package.json
LABEXT_INSTALLED := $(LABEXT)/node_modules/.yarn-state.yml
LABEXT_SOURCES := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*.css $(LABEXT)/style/*.js \
	$(LABEXT)/schema/*.json) \
	$(LABEXT)/package.json $(LABEXT)/tsconfig.json
# jlpm, jupyter-builder and the JupyterLab core package file all come from the venv.
LABEXT_PATH := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: labextension test-labextension test-ui

labextension: $(LABEXT_BUILT)

$(LABEXT_INSTALLED): $(LABEXT)/package.json $(LABEXT)/yarn.lock | $(STAMP)
	$(call step,npm packages for the JupyterLab extension,cd $(LABEXT) && $(LABEXT_PATH) jlpm install --immutable,jlpm-install)

$(LABEXT_BUILT): $(LABEXT_SOURCES) $(LABEXT_INSTALLED)
	$(call step,the JupyterLab extension (jlpm build:prod),cd $(LABEXT) && $(LABEXT_PATH) jlpm build:prod,jlpm-build)

# Lint first (eslint, prettier, stylelint as the JupyterLab extension template sets them up),
# then the unit and widget tests.
test-labextension: $(LABEXT_INSTALLED)
	cd $(LABEXT) && $(LABEXT_PATH) jlpm lint:check
	cd $(LABEXT) && $(LABEXT_PATH) jlpm test

# Needs Debian's chromium (/usr/bin/chromium, or set CHROMIUM) and cargo. Without Chromium the
# browser tests are skipped with one line (a failure when EDGEBOOK_REQUIRE_SERVICES=1, as in CI).
CHROMIUM ?= /usr/bin/chromium
# Each browser run ends within 20 minutes whatever the page does (they take about 1 minute).
UI_BOUND = timeout --kill-after=30 1200
export CHROMIUM
test-ui: setup $(LABEXT_BUILT)
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "test-ui: SKIPPED the browser tests (sidebar, admin page, notebook cells): no Chromium at $(CHROMIUM) (apt-get install chromium, or set CHROMIUM)" | tee -a $(EDGEBOOK_SKIP_REPORT); \
		if [ "$$EDGEBOOK_REQUIRE_SERVICES" = 1 ]; then echo "EDGEBOOK_REQUIRE_SERVICES=1: a missing Chromium is a failure"; exit 1; fi; \
	else \
		export EDGEBOOK_TEST_SESSION=ui-$$$$-$$(date +%s%N); \
		$(LABEXT_PATH) $(UI_BOUND) node tests/ui/run.mjs && $(LABEXT_PATH) $(UI_BOUND) node tests/ui/admin.mjs \
			&& $(LABEXT_PATH) $(UI_BOUND) node tests/ui/notebook_cells.mjs; \
		status=$$?; $(PY) tests/lingering.py "$$EDGEBOOK_TEST_SESSION" || status=1; exit $$status; \
	fi
