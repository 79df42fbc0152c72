# `make run`  — set up and start the gateway on the demo configuration (self-signed CA,
#               stand-in back end, demo user).
# `make test` — set up and run the test suite (the documentation build included).
# `make docs` — build the documentation site into site/ (open site/index.html).
# `make install PREFIX=/opt/tls-gateway` — a runtime-only copy for a server: a venv under PREFIX
#               with the gateway installed from this folder, not editable and without the test
#               tools, so the checkout can be changed or removed without touching the service.
#               Run again to update. The checkout's own .venv stays the development install.
VENV ?= .venv
PREFIX ?= /opt/tls-gateway
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test docs bench clean system-deps install

$(STAMP): pyproject.toml
	@python=$$(scripts/find-python.sh) || exit 1; \
	  test -x $(PY) || $$python -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install:
	@python=$$(scripts/find-python.sh) || exit 1; \
	  test -x $(PREFIX)/venv/bin/python || $$python -m venv $(PREFIX)/venv
	$(PREFIX)/venv/bin/python -m pip install -q --upgrade .
	@echo "installed $(PREFIX)/venv/bin/gateway (runtime only); the systemd unit: deploy/gateway.service"

run: $(STAMP)
	$(PY) -m gateway demo

test: $(STAMP)
	scripts/system-deps.sh
	$(VENV)/bin/lint-imports
	$(MAKE) docs
	$(PY) -m pytest -q

# --strict: a broken link or anchor, or a page missing from the nav, fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) bench/run.py

system-deps:
	scripts/system-deps.sh

clean:
	rm -rf $(VENV) site demo/state demo/.gateway.yaml.state.json
