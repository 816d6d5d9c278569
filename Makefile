# The two commands of the README: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e '.[test]'
	touch $@

## Start the whole service with a demo county (embedded Redis, SQLite in ./data). The first
## start also exports the detection models to ONNX (models/cache, a few minutes, once).
run: $(VENV)/.base
	$(VENV)/bin/lookout models build
	$(VENV)/bin/lookout serve --demo

## Every test (needs PostgreSQL on 127.0.0.1:5432 or LOOKOUT_TEST_PG; .ci/run provides one).
test: $(VENV)/.test
	$(PY) -m pytest

## The benchmarks of bench/, writing their figures to bench/out/.
bench: $(VENV)/.test
	$(PY) bench/import_cameras.py
	$(PY) bench/import_flood.py
	$(PY) bench/list_cameras.py
	$(PY) bench/ingest_soak.py
	$(VENV)/bin/lookout models build
	$(PY) bench/quality.py
	$(PY) bench/crowd.py
	$(PY) bench/throughput.py
	$(PY) bench/outbox.py
	$(PY) bench/alert_feed.py
	$(PY) bench/login_flood.py

clean:
	rm -rf $(VENV) data bench/out
