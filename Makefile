# The course hub's commands. `make demo` and `make test` set everything up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip

.PHONY: help setup chart-libs sandbox-tools browser nbgrader-ref demo test lint format bench images hub-image clean

help:
	@echo "make demo    set up, then run the hub on http://127.0.0.1:8000 with the demo courses"
	@echo "make test    set up, then run the test suite"
	@echo "make lint    ruff check + format check"
	@echo "make images  build the course images (needs a running Docker engine)"
	@echo "make hub-image  build the zero-to-jupyterhub hub image on the base image (HUB_BASE=... for another)"
	@echo "make bench   run the benchmarks (minutes; prints ratios against baselines)"

setup: $(VENV)/.installed node_modules/.installed chart-libs sandbox-tools

# bubblewrap: the sandbox of teachers' notebooks on the embedded default (Debian's package).
# Installed here when we may (root with apt-get); otherwise said, and the hub runs only the
# catalog's notebooks, unsandboxed, refusing runtime publishing (see README, Security model).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends bubblewrap; \
	  else \
	    echo "note: install bubblewrap (apt-get install bubblewrap) so teachers' notebooks run in a sandbox"; \
	  fi; }

# The virtual environment: the package, what single-user servers run, test tools,
# and the demo's statistics kernel.
# Learners' JupyterLab does not phone home for news (hub_config/lab/overrides.json).
$(VENV)/.installed: setup.cfg pyproject.toml hub_config/kernels/stats/kernel.json hub_config/lab/overrides.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[singleuser,test]"
	$(BIN)/jupyter kernelspec install --sys-prefix hub_config/kernels/stats >/dev/null
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp hub_config/lab/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

# JupyterHub's proxy and the development OpenID provider, from the committed lockfile.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The analytics pages' chart libraries (vega, vega-lite, vega-embed: the npm registry, through
# the committed lockfile), copied where the analytics service serves them (git-ignored, package
# data): no CDN, a campus network may have no internet. Their licences (BSD-3-Clause) go beside
# them where the package ships one.
CHART_LIBS_DIR := hub_ext/services/analytics/static
CHART_LIBS := vega vega-lite vega-embed
chart-libs: $(CHART_LIBS_DIR)/.chart-libs
$(CHART_LIBS_DIR)/.chart-libs: node_modules/.installed
	for lib in $(CHART_LIBS); do \
	  cp node_modules/$$lib/build/$$lib.min.js $(CHART_LIBS_DIR)/ || exit 1; \
	  if [ -f node_modules/$$lib/LICENSE ]; then cp node_modules/$$lib/LICENSE $(CHART_LIBS_DIR)/$$lib.LICENSE.txt; fi; \
	done
	touch $@

# nbgrader itself, for the tests that compare our autograde with its own: installed beside
# the environment, not into it (its wheel turns on its server and Lab extensions for every
# Jupyter server of the environment it is in). See tests/test_grading_nbgrader.py.
NBGRADER_REF := .nbgrader-ref
nbgrader-ref: $(NBGRADER_REF)/.installed
$(NBGRADER_REF)/.installed: $(VENV)/.installed
	$(PIP) install --quiet --no-deps --target $(NBGRADER_REF) nbgrader==0.9.6 rapidfuzz==3.14.6
	touch $@

demo: setup
	@BIN=$(BIN) bash hub_config/demo.sh

# Debian's Chromium, for the pages' browser tests (tests/browser.py): installed when we may,
# otherwise said (those tests then skip, saying why; CI requires them).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; \
	  else \
	    echo "note: install chromium (apt-get install chromium) for the pages' browser tests"; \
	  fi; }

# The suite in parallel processes (pytest-xdist): a test module stays in one process, the
# Docker tier in one of its own (tests/conftest.py groups them). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 3
test: setup nbgrader-ref browser
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python -m tests.benchmarks.bench_spawn_storm

# every image, or some: make images IMAGES="base ds101"
images:
	sh course_images/build.sh $(IMAGES)

# the hub's image (course_images/hub) on hub-ext/base; for a real deployment, on the chart's:
# make hub-image HUB_BASE=quay.io/jupyterhub/k8s-hub:4.4.0
hub-image:
	HUB_EXT_HUB_BASE=$(HUB_BASE) sh course_images/build.sh hub

clean:
	rm -rf .demo course_workspaces .pytest_cache
