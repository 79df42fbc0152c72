# `make run`  — set up and start the gateway on the demo configuration (self-signed CA,
#               stand-in back end, demo user).
# `make test` — set up and run the test suite (the documentation build included).
# `make docs` — build the documentation site into site/ (open site/index.html).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test docs bench clean system-deps

$(STAMP): pyproject.toml
	@python=$$(scripts/find-python.sh) || exit 1; \
	  test -x $(PY) || $$python -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m gateway demo

test: $(STAMP)
	scripts/system-deps.sh
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
