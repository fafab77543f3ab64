# Two entry points for a fresh machine: `make run` (the demo) and `make test` (every test).
# Each creates .venv and installs what it needs; `make test` also installs the Debian packages of the browser
# tests (chromium, chromium-driver) and of the store tests (redis-server, redis-sentinel) when they are missing.

SYSTEM_PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver

.PHONY: run test test-hostile bench clean browser redis

# The demo needs the gateway and its sandbox; the tests need the test tools too (pytest, mypy, ruff, Playwright).
$(VENV)/.installed-demo: pyproject.toml
	[ -x $(PY) ] || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[sandbox]'
	touch $@

$(VENV)/.installed: pyproject.toml
	[ -x $(PY) ] || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,sandbox]'
	touch $@ $(VENV)/.installed-demo

# Headless Chromium for tests/browser/ (Playwright drives it; `playwright install` is never run: it downloads a
# browser of its own). apt-get runs only when a binary is missing; as root directly, else through sudo.
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		if ! command -v apt-get >/dev/null; then \
			echo "no apt-get: install Chromium as $(CHROMIUM) yourself; the browser tests skip without it"; \
		else \
			sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
			echo "installing Debian's chromium and chromium-driver for the browser tests"; \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
		fi; \
	fi

# Debian's redis-server and redis-sentinel for the tests of the shared store (tests start their own servers on
# free loopback ports); installed without recommended packages, only when missing.
redis:
	@if ! command -v redis-server >/dev/null || ! command -v redis-sentinel >/dev/null; then \
		if ! command -v apt-get >/dev/null; then \
			echo "no apt-get: install redis-server and redis-sentinel yourself; the Redis tests skip without them"; \
		else \
			sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
			echo "installing Debian's redis-server and redis-sentinel for the store tests"; \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
			$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				redis-server redis-sentinel; \
		fi; \
	fi

# One plain command, which make runs itself (no shell between): Ctrl-C reaches the demo with make, and the demo
# stops when make is sent SIGINT alone (`kill -INT <make's pid>`), which make does not pass on (see
# gateway/sandbox/run.py). DEMO_ARGS: other ports, say `make run DEMO_ARGS="--port 8081"`.
DEMO_ARGS ?=
run: $(VENV)/.installed-demo
	$(VENV)/bin/session-gateway demo $(DEMO_ARGS)

test: $(VENV)/.installed browser redis
	$(VENV)/bin/ruff check gateway plugins tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest $(PYTEST_ARGS)

# The standing hostile-input suite alone (it runs inside `make test` too): smuggling at the socket, properties of
# every reader of client input, Okta and upstream faults, slow clients.
test-hostile: $(VENV)/.installed
	$(PY) -m pytest -m hostile $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/proxy_bench.py --python $(PY)

clean:
	rm -rf $(VENV) .pytest_cache
