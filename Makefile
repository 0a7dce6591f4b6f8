# dataengine: `make demo` runs the whole loop on synthetic video; `make test` runs lint and the tests.
# Both create or refresh .venv on their own.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Label Studio pins its own Django stack: it lives in a virtualenv of its own (docs/review.md).
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed
LABELSTUDIO_PORT ?= 8081
WHEELHOUSE ?= $(HOME)/.cache/dataengine/wheelhouse
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Airflow's task processes do not run in this folder: give the embedded engine absolute locations
# unless the caller set their own.
DATAENGINE_DATABASE_URL ?= sqlite:///$(CURDIR)/.dataengine/lineage.db
DATAENGINE_STORAGE_URL ?= file://$(CURDIR)/.dataengine/store
AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/.dataengine/airflow \
	AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(CURDIR)/plugins \
	AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	DATAENGINE_DATABASE_URL=$(DATAENGINE_DATABASE_URL) \
	DATAENGINE_STORAGE_URL=$(DATAENGINE_STORAGE_URL)

.PHONY: venv demo test lint unit bench up train-now clean mmdet labelstudio chromium up-cluster down-cluster compose-env

venv: $(STAMP)

# torch/torchvision pins in pyproject.toml match the wheels on the build machines' disk.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[airflow,dev,encord]'
	@# The mmdet backend too, but only once `make mmdet` has built the mmcv wheel (a no-op otherwise).
	@if compgen -G "$(WHEELHOUSE)/mmcv-2.1.0-*.whl" >/dev/null; then \
		$(BIN)/python -m pip install --quiet --find-links $(WHEELHOUSE) -e '.[mmdet]'; fi
	@touch $(STAMP)

# Builds mmcv 2.1.0 from source once (about 30 minutes on 2 cores; the wheel is cached outside the repo)
# and installs the mmdetection backend from it (docs/autolabel.md, "mmdetection").
mmdet: venv
	DATAENGINE_WHEELHOUSE=$(WHEELHOUSE) scripts/build_mmcv.sh
	$(BIN)/python -m pip install --quiet --find-links $(WHEELHOUSE) -e '.[mmdet]'

labelstudio: $(LS_STAMP)

$(LS_STAMP):
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet 'label-studio==1.23.2'
	@touch $(LS_STAMP)

demo: venv
	$(BIN)/dataengine demo

lint: venv
	$(BIN)/ruff check src tests dags plugins benchmarks scripts
	$(BIN)/ruff format --check src tests dags plugins benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_sql.py

# The suite runs on TEST_WORKERS processes (pytest-xdist), each test file on one worker (loadfile):
# its module fixtures (a trained model, an Airflow DagBag) are built once, and the tests sharing one
# server (the session's Label Studio, the local Airflow cluster) live in one file each.
TEST_WORKERS ?= 2

test: lint labelstudio chromium
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# tests/browser drive Debian's chromium through Playwright (never a browser Playwright downloads).
chromium:
	@test -x /usr/bin/chromium || apt-get install -y chromium chromium-driver || \
		(apt-get update && apt-get install -y chromium chromium-driver)

unit: venv
	$(BIN)/pytest tests/unit

bench: venv
	@# The ingest benchmark's reference is the ffmpeg command line (Debian's package).
	@command -v ffmpeg >/dev/null || apt-get install -y ffmpeg || sudo apt-get install -y ffmpeg
	$(BIN)/python -m benchmarks

# Airflow with the API server up before anything else (src/dataengine/airflow/up.py): no task starts
# before the API server answers. `make up DEMO=1` opens the engine that `make demo` left in .dataengine/demo.
DEMO_ENV := .dataengine/demo/engine.env
up: venv
	mkdir -p .dataengine/airflow
	@if [ "$(DEMO)" = 1 ] && [ ! -f $(DEMO_ENV) ]; then \
		echo "make up DEMO=1 opens the engine of \`make demo\`, and there is none yet: run \`make demo\` first"; exit 2; fi
	@# `make up LABELSTUDIO=1` also starts Label Studio beside Airflow (stopped with it by Ctrl-C).
	@if [ "$(LABELSTUDIO)" = 1 ]; then $(MAKE) --no-print-directory labelstudio && mkdir -p .dataengine/labelstudio && \
		(LABEL_STUDIO_BASE_DATA_DIR=$(CURDIR)/.dataengine/labelstudio SENTRY_DSN= FRONTEND_SENTRY_DSN= \
		LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=$(CURDIR)/.dataengine/store \
		$(LS_VENV)/bin/label-studio start --no-browser --port $(LABELSTUDIO_PORT) \
		>.dataengine/labelstudio.log 2>&1 &) && echo "Label Studio: http://localhost:$(LABELSTUDIO_PORT)"; fi
	$(AIRFLOW_ENV) $(BIN)/python -m dataengine.airflow.up $(if $(filter 1,$(DEMO)),--env-file $(DEMO_ENV))

# The weekly training run, now, on the `make up` instance (same as the Trigger button in the UI).
train-now: venv
	$(AIRFLOW_ENV) $(BIN)/airflow dags trigger one_click_train

clean:
	rm -rf .dataengine .pytest_cache .mypy_cache .ruff_cache

# The cluster mode (docs/operations.md, "Deployment"): Airflow with the CeleryExecutor on this machine's
# Redis and PostgreSQL, a worker on the default queue and one on the gpu queue, the store on S3 (moto's
# server in memory unless DATAENGINE_STORAGE_URL names yours). Ctrl-C stops every process it started.
up-cluster: venv .env
	$(BIN)/python -m dataengine.airflow.cluster_cli up

# Stops a cluster left running (by the pids under .dataengine/cluster/pids).
down-cluster: venv
	$(BIN)/python -m dataengine.airflow.cluster_cli down

# The shared secrets (JWT, Fernet, passwords) that docker-compose.yaml and up-cluster read: kept, never committed.
compose-env .env: | venv
	$(BIN)/python -m dataengine.airflow.cluster_cli env-file .env
