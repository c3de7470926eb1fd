# The two commands of the README: `make run` (dashboard + background sync) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: run sync test test-clocks bench clean

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

# The suite at fixed clocks (just after midnight, before 07:00, a minute before midnight, a month's last day), the
# browser tests aside (Chromium keeps the machine's clock): a test that depends on the hour fails here, not in CI.
# About 8 minutes a clock.
test-clocks: $(VENV)/.dev
	bash tests/install-test-tools.sh
	tomorrow=$$(date -u -d tomorrow +%F); month_end=$$(date -u -d "$$(date -u +%Y-%m-01) -1 day" +%F); \
	for clock in $${tomorrow}T00:30 $${tomorrow}T06:59 $$(date -u +%F)T23:59 $${month_end}T23:59; do \
	  echo "== the suite at $$clock UTC"; \
	  $(PY) -m pytest -q --clock $$clock --ignore tests/test_browser.py --ignore tests/test_signin.py || exit 1; \
	done

# The figures of the README's Performance section (bench/scale.py and bench/leads.py build 20M+ events: hours).
bench: $(VENV)/.dev
	$(PY) bench/ingest.py
	$(PY) bench/hostile.py
	$(PY) bench/scale.py
	$(PY) bench/scaleout.py
	$(PY) bench/leads.py
	$(PY) bench/backfill.py
	$(PY) bench/labels.py
	$(PY) bench/incidents.py
	$(PY) bench/workspace.py

clean:
	rm -rf $(VENV) data .pytest_cache
