# The two commands of the README: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test system-packages bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e '.[test]'
	touch $@

## Start the whole service with a demo county (embedded Redis, SQLite in ./data). The first
## start also exports the detection models to ONNX (models/cache, a few minutes, once).
run:
	@bash .ci/system-packages --run $(PYTHON)
	@$(MAKE) --no-print-directory $(VENV)/.base
	$(VENV)/bin/lookout models build
	$(VENV)/bin/lookout serve --demo

## Every test, on a fresh clone too: first the Debian packages the tests need (installed as root
## or with sudo, else the one command to run is printed), then .venv. PostgreSQL: LOOKOUT_TEST_PG,
## else the server on 127.0.0.1:5432 if it answers, else the tests start a private one.
test: system-packages
	@$(MAKE) --no-print-directory $(VENV)/.test
	$(PY) -m pytest

## The system packages of the tests (shared with .ci/run); a few checks when nothing is missing.
system-packages:
	@bash .ci/system-packages $(PYTHON)

## The benchmarks of bench/, writing their figures to bench/out/.
bench: $(VENV)/.test
	$(PY) bench/import_cameras.py
	$(PY) bench/import_flood.py
	$(PY) bench/list_cameras.py
	$(PY) bench/ingest_soak.py
	$(VENV)/bin/lookout models build
	$(PY) bench/quality.py
	$(PY) bench/video_events.py
	$(PY) bench/crowd.py
	$(PY) bench/throughput.py
	$(PY) bench/outbox.py
	$(PY) bench/alert_feed.py
	$(PY) bench/login_flood.py

clean:
	rm -rf $(VENV) data bench/out
