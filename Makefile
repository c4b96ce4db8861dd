# tapwatch: `make demo` runs the whole monitor on embedded defaults; `make test` sets up and runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Two processes, one test file each: most tests wait on servers, so two keep two cores busy.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: demo test lint typecheck bench system-deps venv-deps clean help

help:
	@echo "make demo   - run tapwatch with simulated elders; open http://127.0.0.1:8000/"
	@echo "make test   - install what tests need and run them all"
	@echo "make lint   - ruff, mypy and the import-graph check (tools/check_layers.py)"
	@echo "make typecheck - mypy only"
	@echo "make bench  - run the benchmarks in bench/"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV) || { $(MAKE) --no-print-directory venv-deps && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tapwatch demo

# Debian's python3 makes no venv until python3-venv is installed (ensurepip is split out of it): the first
# `make demo` on a fresh machine installs it as `make test` installs the test deps (root, or sudo), else says so.
venv-deps:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's python3-venv (python3 -m venv needs it)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv) >/dev/null; \
	elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then \
	  echo "installing Debian's python3-venv with sudo (python3 -m venv needs it)"; \
	  sudo sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv' >/dev/null; \
	else echo "python3 -m venv needs Debian's python3-venv: apt-get install python3-venv, then make demo again" >&2; exit 1; fi

# Debian packages the tests run for real (broker, databases), installed when
# missing and apt is available; tests that need a missing one skip with a reason.
# Each entry is COMMAND-OR-PATH:PACKAGE.
SYSTEM_DEPS := mosquitto:mosquitto /usr/lib/postgresql:postgresql influxd:influxdb nginx:nginx \
               chromium:chromium chromedriver:chromium-driver /usr/share/fonts/opentype/noto:fonts-noto-cjk \
               promtool:prometheus age:age sqlite3:sqlite3 faketime:faketime

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
	  probe=$${dep%%:*}; pkg=$${dep##*:}; \
	  if ! command -v $$probe >/dev/null 2>&1 && [ ! -e $$probe ] && [ ! -e /usr/sbin/$$probe ]; then missing="$$missing $$pkg"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	  else echo "missing Debian packages:$$missing (apt unavailable): their tests will be skipped"; fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py
	$(BIN)/pytest $(PYTEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/check_layers.py

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
