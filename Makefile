# The two set-up commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint docs lock install install-dev clean bench bench-quick wrk docs-assets catalog-images

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Every install is from the hashed lock files (`make lock` refreshes them from pyproject.toml):
# requirements.txt (the service), requirements-dev.txt (+ dev tools and torch, for the tests),
# requirements-bench.txt (+ the `bench` extra). The package itself goes in without deps.
PIP_LOCKED := $(BIN)/pip install --quiet --require-hashes
# torch is locked as PyTorch's CPU build (2.13.0+cpu), which PyPI does not serve: pip takes it
# from its find-links where a machine has the file, else from this index (TORCH_INDEX= drops
# it). It goes in alone first, so the index is asked about torch only, not every package.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
define install_torch
	awk '/^torch==/ {keep = 1; print; next} keep && /^ / {print; next} {keep = 0}' $(1) > $(VENV)/torch-lock.txt
	$(PIP_LOCKED) --no-deps $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r $(VENV)/torch-lock.txt
endef

# Service dependencies only (no torch, no test tools).
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Tests also need the dev tools and torch (the import-torch tool's golden-parity tests).
$(VENV)/.installed-dev: requirements-dev.txt pyproject.toml | $(BIN)/python
	$(call install_torch,requirements-dev.txt)
	$(PIP_LOCKED) -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(VENV)/.installed $@

# The benchmarks also need the `bench` extra (Flask + torch for the stand-in, matplotlib).
$(VENV)/.installed-bench: requirements-bench.txt pyproject.toml | $(BIN)/python
	$(call install_torch,requirements-bench.txt)
	$(PIP_LOCKED) -r requirements-bench.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(VENV)/.installed $@

## Re-resolve the lock files from pyproject.toml with pip-tools, keeping every pin that still
## fits; `make lock UPGRADE=1` moves everything to the newest versions allowed. The dev and
## bench files are constrained by requirements.txt, so all three agree on the service's pins.
## Resolve on Linux x86_64 with CPython 3.11 (the image's), with torch 2.13.0+cpu reachable.
LOCK_ARGS = --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
lock: $(VENV)/.installed-dev
	$(BIN)/pip-compile $(LOCK_ARGS) -o requirements.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_ARGS) -c requirements.txt --extra dev --extra torch \
		-o requirements-dev.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_ARGS) -c requirements.txt --extra bench \
		-o requirements-bench.txt pyproject.toml

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve on http://127.0.0.1:8000 with the embedded defaults (SQLite + ./var), migrating and
## seeding the bundled catalogue first.
run: $(VENV)/.installed
	$(BIN)/hollang serve --host $(HOST) --port $(PORT)

## The whole suite. MariaDB cases run when HOLLANG_TEST_MYSQL_URL is set (docs/development.md).
## It runs on PYTEST_WORKERS processes (pytest-xdist), each taking whole modules, so a
## module's servers start once. The tests mostly wait on processes, databases and sockets,
## so more workers than cores pays: 4 on 2 cores. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 4
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## The documentation site (mkdocs-material, docs/ + mkdocs.yml) into ./site; --strict turns
## a broken link or a page missing from the nav into a failure. `.ci/run` calls it.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## End-to-end benchmarks against MariaDB on 127.0.0.1:3306 (root; docs/benchmarks.md).
## They need wrk: installed here with apt-get when missing and we are root.
bench: $(VENV)/.installed-bench wrk
	$(BIN)/python benchmarks/e2e.py

bench-quick: $(VENV)/.installed-bench wrk
	$(BIN)/python benchmarks/e2e.py --quick

wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq wrk; } || \
		{ echo "the benchmarks need wrk: apt-get install -y wrk" >&2; exit 1; }

## Draw the bundled catalogue's placeholder images again (db/catalog/images/, committed);
## `$(BIN)/python tools/catalog_images.py --check` says whether they are current.
catalog-images: $(VENV)/.installed-dev
	$(BIN)/python tools/catalog_images.py

## Copy Swagger UI and ReDoc for /docs and /redoc again, byte for byte, from the PyPI wheel
## that republishes their npm builds (server/static/SOURCES.md); review the diff, then commit.
DOCS_SIDECAR ?= 2026.10.1
SIDECAR_DIR := $(VENV)/docs-assets/drf_spectacular_sidecar/static/drf_spectacular_sidecar
docs-assets: | $(BIN)/python
	rm -rf $(VENV)/docs-assets
	$(BIN)/pip download --quiet --no-deps --dest $(VENV)/docs-assets \
		drf-spectacular-sidecar==$(DOCS_SIDECAR)
	$(BIN)/python -m zipfile -e $(VENV)/docs-assets/*.whl $(VENV)/docs-assets
	cd $(SIDECAR_DIR)/swagger-ui-dist && \
		cp swagger-ui-bundle.js swagger-ui.css oauth2-redirect.js LICENSE $(CURDIR)/server/static/swagger-ui/
	cd $(SIDECAR_DIR)/redoc && cp LICENSE bundles/redoc.standalone.js \
		bundles/redoc.standalone.js.LICENSE.txt $(CURDIR)/server/static/redoc/
	rm -rf $(VENV)/docs-assets

clean:
	rm -rf $(VENV) var site .pytest_cache .ruff_cache
