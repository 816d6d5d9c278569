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
	@# the models first, outside any test's time limit (a fresh clone: the export environment and
	@# four exports, several minutes, once)
	$(VENV)/bin/lookout models build
	$(PY) -m pytest

## The system packages of the tests (shared with .ci/run); a few checks when nothing is missing.
system-packages:
	@bash .ci/system-packages $(PYTHON)

## The benchmarks of bench/, writing their figures to bench/out/.
bench: $(VENV)/.test
	$(VENV)/bin/lookout models build
	@# every bench runs, even after one whose goal failed; the exit status says whether any did
	@failed=""; for bench in import_cameras import_flood list_cameras ingest_soak quality video_events crowd \
	    throughput outbox alert_feed login_flood; do \
	    $(PY) bench/$$bench.py || failed="$$failed $$bench"; done; \
	if [ -n "$$failed" ]; then echo "goals not met:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) data bench/out
