# Two entry points for a fresh machine: `make run` (the demo) and `make test` (every test).
# Each creates .venv and installs what it needs; system packages come from scripts/ensure-system-packages.

SYSTEM_PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test bench clean

$(VENV)/.installed: pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,sandbox]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/session-gateway demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check gateway plugins tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/proxy_bench.py --python $(PY)

clean:
	rm -rf $(VENV) .pytest_cache
