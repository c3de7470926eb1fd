# The two commands of the README: `make run` (dashboard + background sync) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run sync test bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(VENV)/.runtime $@

# The dashboard on the embedded store, with `python -m ingest run` syncing in the background.
# With no O365_TENANT_ID set, both use the simulated DEMO tenant.
run: $(VENV)/.runtime
	$(PY) -m ingest run & sync_pid=$$!; \
	trap 'kill $$sync_pid 2>/dev/null; wait $$sync_pid' EXIT INT TERM; \
	$(PY) -m dashboard

sync: $(VENV)/.runtime
	$(PY) -m ingest sync

# Installs what the tests need (Python packages, Chromium, the Cosmos DB server) and runs them all.
test: $(VENV)/.dev
	bash tests/install-test-tools.sh
	$(PY) -m pytest

# The figures of the README's Performance section (bench/scale.py and bench/leads.py build 20M+ events: hours).
bench: $(VENV)/.dev
	$(PY) bench/ingest.py
	$(PY) bench/hostile.py
	$(PY) bench/scale.py
	$(PY) bench/scaleout.py
	$(PY) bench/leads.py
	$(PY) bench/backfill.py
	$(PY) bench/labels.py

clean:
	rm -rf $(VENV) data .pytest_cache
