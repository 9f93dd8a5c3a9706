# soxtrail — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
Q      ?=
CLUSTERS ?=
CONFIG ?=
SOURCES ?=
SIZE   ?= small
# where the reconcile runs: postgres (default) or spark (installs the `spark` extra and Java)
ENGINE ?=
# pytest-xdist workers for `make test` (test files are kept whole on one worker: their
# module fixtures each own a database and a run); 0 runs the suite in this process
TEST_WORKERS ?= auto
# Debian packages the test suite drives as real software (libreoffice-calc: the workbook's
# Summary printed to PDF, checked to fit one page; poppler-utils: pdftoppm, that page as the
# PNG `make docs` writes)
TEST_DEBS := postgresql-15-pgaudit pgbackrest faketime libreoffice-calc poppler-utils \
  openjdk-17-jre-headless
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: help quarter demo-signoff capture test test-spark test-fast lint docs docs-serve bench demo clean system-deps spark-deps

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py extract/connectors/_pgaudit_scan.pyx
	@test -n "$(PYTHON)" || { echo "error: python3.11 not found" >&2; exit 2; }
	@echo "first run: setting up $(VENV) (about 2 minutes, once; later runs skip this)"
	@test -x $(BIN)/python || { echo "  1/3 creating the virtualenv $(VENV) (a few seconds)"; \
	  $(PYTHON) -m venv $(VENV); }
	@echo "  2/3 upgrading pip (about 10 seconds)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@echo "  3/3 installing soxtrail and its dependencies: dbt, psycopg, xlsxwriter, ... and" \
	  "compiling the pgaudit log scanner (about 1-2 minutes)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,lint]'
	@touch $(STAMP)
	@echo "  done: $(VENV) is ready"

# engine: spark needs the `spark` extra (pyspark, dbt-spark, pyarrow: about 1 minute, once)
$(SPARK_STAMP): $(STAMP) pyproject.toml
	@echo "installing the Spark engine's extra: pyspark (Spark itself), dbt-spark, pyarrow (about 1 minute, once)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[spark]'
	@touch $(SPARK_STAMP)

spark-deps: $(SPARK_STAMP) ## The Spark engine's Python extra and Java 17 (Debian's openjdk-17-jre-headless)
	@command -v java >/dev/null || $(MAKE) --no-print-directory system-deps TEST_DEBS=openjdk-17-jre-headless

quarter: $(STAMP) $(if $(filter spark,$(ENGINE)),spark-deps) ## Run a quarter: make quarter Q=2024Q3 [CLUSTERS=a,b] [CONFIG=soxtrail.yml] [ENGINE=spark] (the demo: then its sign-off)
	@[[ "$(Q)" =~ ^[0-9]{4}Q[1-4]$$ ]] || { echo "error: Q='$(Q)' is not a quarter; expected YYYYQn, e.g. make quarter Q=2024Q3" >&2; exit 2; }
	$(if $(ENGINE),SOXTRAIL_ENGINE=$(ENGINE) )$(BIN)/soxtrail run --quarter $(Q) $(if $(CLUSTERS),--clusters $(CLUSTERS)) $(if $(CONFIG),--config $(CONFIG))
	@$(if $(CONFIG),true,$(MAKE) --no-print-directory demo-signoff Q=$(Q))

# the demo estate's people (signers.yml, keys/ of the demo: DEMO keys, derived from the names)
DEMO ?= $(or $(SOXTRAIL_HOME),.soxtrail)/demo/$(Q)
demo-signoff: $(STAMP) ## The demo's management step: its preparer and reviewer sign off the quarter's newest run (make demo-signoff Q=2024Q3)
	@[[ "$(Q)" =~ ^[0-9]{4}Q[1-4]$$ ]] || { echo "error: Q='$(Q)' is not a quarter; expected YYYYQn" >&2; exit 2; }
	@run=$$($(BIN)/soxtrail runs --json | $(BIN)/python -c 'import json, sys; print(next((r["run_id"] for r in json.load(sys.stdin) if r["quarter"] == "$(Q)" and r["kind"] == "quarter" and r["status"] == "completed"), ""))') && \
	  test -n "$$run" || { echo "error: no completed run of $(Q) to sign off" >&2; exit 2; }; \
	  set -x; \
	  $(BIN)/soxtrail signoff $$run --as pat.preparer --role preparer --key $(DEMO)/keys/pat.preparer.pem --comment "demo: prepared; exceptions answered in responses/$(Q).yml" && \
	  $(BIN)/soxtrail signoff $$run --as rita.reviewer --role reviewer --key $(DEMO)/keys/rita.reviewer.pem --comment "demo: reviewed"

capture: $(STAMP) ## Capture sources that forget, mid-quarter: make capture Q=2024Q3|current CONFIG=soxtrail.yml [SOURCES=a,b]
	@[[ "$(Q)" =~ ^([0-9]{4}Q[1-4]|current)$$ ]] || { echo "error: Q='$(Q)' is not a quarter; expected YYYYQn or current" >&2; exit 2; }
	@test -n "$(CONFIG)" || { echo "error: make capture needs CONFIG=soxtrail.yml" >&2; exit 2; }
	$(BIN)/soxtrail capture --quarter $(Q) --config $(CONFIG) $(if $(SOURCES),--sources $(SOURCES))

system-deps: ## Install the Debian packages the tests drive (pgaudit, pgBackRest, faketime, LibreOffice Calc) when missing
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages the tests drive:$$missing" \
	      "(apt-get; about 1-3 minutes, LibreOffice Calc is most of it; once)"; \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null; }); \
	  else echo "warning: missing Debian packages:$$missing (run as root or install them)" >&2; fi; \
	fi

test: $(STAMP) $(SPARK_STAMP) system-deps ## Run the whole test suite (with one demo quarter on local Spark and the dbt unit tests on Spark)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not spark"

test-spark: $(STAMP) spark-deps system-deps ## Every Spark engine test, with the porting harness's model-by-model comparison (marker spark, left out of make test)
	$(BIN)/pytest -q tests/integration/test_spark_engine_parts.py tests/e2e/test_spark_engine.py tests/integration/test_dbt_unit_tests_on_spark.py

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest -q tests/unit

lint: $(STAMP) ## ruff, mypy, import-linter (the layers) and sqlfluff
	$(BIN)/ruff check soxtrail extract render tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m soxtrail.reconcile.sqllint models macros

docs: $(STAMP) ## Build the dbt docs site and the workbook's Summary page (PNG) of the last run
	$(BIN)/soxtrail docs generate
	@command -v soffice >/dev/null && command -v pdftoppm >/dev/null || $(MAKE) --no-print-directory system-deps
	$(BIN)/python -m render.preview

docs-serve: $(STAMP) ## Serve the dbt docs site on localhost
	$(BIN)/soxtrail docs serve

bench: $(STAMP) $(if $(filter spark,$(ENGINE)),spark-deps) ## Benchmark: make bench SIZE=small|medium|large [ENGINE=spark: both engines side by side]
	$(BIN)/python -m bench.run --size $(SIZE) $(if $(filter spark,$(ENGINE)),--engine spark)

demo: $(STAMP) ## Write the demo estate: make demo Q=2024Q3 OUT=demo
	$(BIN)/soxtrail demo --quarter $(or $(Q),2024Q3) --out $(or $(OUT),demo)

clean: ## Remove the virtualenv and local state (.soxtrail: embedded database, store)
	-@($(BIN)/soxtrail db stop >/dev/null 2>&1) || pkill -f '$(CURDIR)/.soxtrail/pg' || true
	rm -rf $(VENV) .soxtrail
