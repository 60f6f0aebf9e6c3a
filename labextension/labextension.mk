# The JupyterLab extension, built from source with jlpm (from the project's JupyterLab).
# Include from the top-level Makefile after VENV and STAMP are defined:
#     include labextension/labextension.mk
# Output: edgebook/labextension/ (git-ignored), which the wheel ships as
# share/jupyter/labextensions/@edgebook/labextension.

LABEXT := labextension
LABEXT_BUILT := edgebook/labextension/package.json
LABEXT_INSTALLED := $(LABEXT)/node_modules/.yarn-state.yml
LABEXT_SOURCES := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*.css $(LABEXT)/style/*.js) \
	$(LABEXT)/package.json $(LABEXT)/tsconfig.json
# jlpm, jupyter-builder and the JupyterLab core package file all come from the venv.
LABEXT_PATH := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

.PHONY: labextension test-labextension test-ui

labextension: $(LABEXT_BUILT)

$(LABEXT_INSTALLED): $(LABEXT)/package.json $(LABEXT)/yarn.lock | $(STAMP)
	cd $(LABEXT) && $(LABEXT_PATH) jlpm install --immutable

$(LABEXT_BUILT): $(LABEXT_SOURCES) $(LABEXT_INSTALLED)
	cd $(LABEXT) && $(LABEXT_PATH) jlpm build:prod

test-labextension: $(LABEXT_INSTALLED)
	cd $(LABEXT) && $(LABEXT_PATH) jlpm test

# Needs Debian's chromium (/usr/bin/chromium, or set CHROMIUM) and cargo.
test-ui: setup $(LABEXT_BUILT)
	$(LABEXT_PATH) node tests/ui/run.mjs
	$(LABEXT_PATH) node tests/ui/admin.mjs
