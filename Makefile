# `make run`  — set up and start the gateway on the demo configuration (self-signed CA,
#               stand-in back end, demo user).
# `make test` — set up and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean system-deps

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
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/run.py

system-deps:
	scripts/system-deps.sh

clean:
	rm -rf $(VENV) demo/state demo/.gateway.yaml.state.json
