# dataengine: `make demo` runs the whole loop on synthetic video; `make test` runs lint and the tests.
# Both create or refresh .venv on their own.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
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

.PHONY: venv demo test lint unit bench up train-now clean

venv: $(STAMP)

# torch/torchvision pins in pyproject.toml match the wheels on the build machines' disk.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[airflow,dev,encord]'
	@touch $(STAMP)

demo: venv
	$(BIN)/dataengine demo

lint: venv
	$(BIN)/ruff check src tests dags plugins benchmarks
	$(BIN)/ruff format --check src tests dags plugins benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

bench: venv
	$(BIN)/python -m benchmarks

up: venv
	mkdir -p .dataengine/airflow
	$(AIRFLOW_ENV) $(BIN)/airflow db migrate
	$(AIRFLOW_ENV) $(BIN)/airflow pools set gpu 1 "GPU slots for autolabel and training"
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

# The weekly training run, now, on the `make up` instance (same as the Trigger button in the UI).
train-now: venv
	$(AIRFLOW_ENV) $(BIN)/airflow dags trigger one_click_train

clean:
	rm -rf .dataengine .pytest_cache .mypy_cache .ruff_cache
