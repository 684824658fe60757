# The two set-up commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint install install-dev clean bench bench-quick wrk docs-assets catalog-images

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Service dependencies only (no torch, no test tools).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Tests also need the dev tools and torch (the import-torch tool's golden-parity tests).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,torch]'
	touch $(VENV)/.installed $@

# The benchmarks also need the `bench` extra (Flask + torch for the stand-in, matplotlib).
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve on http://127.0.0.1:8000 with the embedded defaults (SQLite + ./var), migrating and
## seeding the bundled catalogue first.
run: $(VENV)/.installed
	$(BIN)/hollang serve --host $(HOST) --port $(PORT)

## The whole suite. MariaDB cases run when HOLLANG_TEST_MYSQL_URL is set (see README).
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## End-to-end benchmarks against MariaDB on 127.0.0.1:3306 (root; README, Benchmarks).
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
	rm -rf $(VENV) var .pytest_cache .ruff_cache
