# softsym — every target that needs the virtualenv depends on `setup`, which creates .venv/ once.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXPERIMENT ?= paper
JOBS ?= 2
PORT ?= 5000
# The learning-curve sweep that `make reproduce` runs after the main grid (configs/hparams_search/), if any.
LEARNING_CURVE ?= $(if $(filter paper,$(EXPERIMENT)),learning_curve,$(if $(filter full,$(EXPERIMENT)),learning_curve_full,))

.PHONY: setup test lint data reproduce strengths sweep report ui mlflow-server mlflow-server-postgres bench bench-hessian bench-loader bench-generator bench-models bench-penalty clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	CI=$${CI:-true} $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts

# Generate (or reuse) the experiment's jets once, before parallel jobs start (logged to <experiment>-data;
# rerun=true: the shards it reuses are checked every time, even when an earlier data job finished).
data: setup
	$(BIN)/softsym experiment=$(EXPERIMENT) stages=[data] mlflow.experiment_name=$(EXPERIMENT)-data rerun=true

# The study: data -> every (arm, model, seed) job, $(JOBS) at a time -> the learning curve -> report. Wall time is printed at the end.
reproduce: setup
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory data EXPERIMENT=$(EXPERIMENT) && \
	$(BIN)/softsym -m experiment=$(EXPERIMENT) hydra/launcher=local_parallel hydra.launcher.n_jobs=$(JOBS) threads=1 && \
	$(if $(LEARNING_CURVE),$(BIN)/softsym -m experiment=$(EXPERIMENT) hparams_search=$(LEARNING_CURVE) \
	  hydra/launcher=local_parallel hydra.launcher.n_jobs=$(JOBS) threads=1 &&) \
	$(BIN)/softsym-report --experiment $(EXPERIMENT) && \
	echo "make reproduce EXPERIMENT=$(EXPERIMENT): $$(( $$(date +%s) - start )) s wall time"

# The arms' strengths at the experiment's size (README, "Choosing the strengths"): the baseline, the Lorentz
# penalty, the GC regulariser and weight decay at several strengths, train + complexity, on seeds the study
# does not use; then the report, whose "Strengths of the arms" section gives each arm's validation-AUC cost and
# GC against the baseline and the controls' GC against the matched Lorentz arm.
STRENGTH_MODELS ?= pfn,mlp
STRENGTH_SEEDS ?= 5,6,7
LORENTZ_LAMBDAS ?= 0.001,0.003,0.01
GC_LAMBDAS ?= 0.00001,0.00003,0.0001,0.0003,0.001,0.003,0.01,0.03
WEIGHT_DECAYS ?= 1,3,10
STRENGTH_JOBS = experiment=$(EXPERIMENT) mlflow.experiment_name=$(EXPERIMENT)-strengths stages=[data,train,complexity] \
  model=$(STRENGTH_MODELS) seed=$(STRENGTH_SEEDS) hydra/launcher=local_parallel hydra.launcher.n_jobs=$(JOBS) threads=1
strengths: data
	$(BIN)/softsym -m $(STRENGTH_JOBS) arm=baseline
	$(BIN)/softsym -m $(STRENGTH_JOBS) arm=lorentz_matched penalty.lambda=$(LORENTZ_LAMBDAS)
	$(BIN)/softsym -m $(STRENGTH_JOBS) arm=gc penalty.lambda=$(GC_LAMBDAS)
	$(BIN)/softsym -m $(STRENGTH_JOBS) arm=weight_decay train.weight_decay=$(WEIGHT_DECAYS)
	$(BIN)/softsym-report --experiment $(EXPERIMENT)-strengths

sweep: setup
	$(BIN)/softsym -m experiment=$(EXPERIMENT) hparams_search=lambda_sweep hydra/launcher=local_parallel \
	  hydra.launcher.n_jobs=$(JOBS) threads=1

report: setup
	$(BIN)/softsym-report --experiment $(EXPERIMENT)

ui: setup
	@echo "MLflow UI: http://127.0.0.1:$(PORT)/#/experiments?workflowType=machine_learning (the runs tables)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

# A real tracking server on 127.0.0.1 (SQLite backend, artifacts served by the server). Jobs use it with
# mlflow.tracking_uri=http://127.0.0.1:$(PORT); softsym-report with --tracking-uri http://127.0.0.1:$(PORT).
mlflow-server: setup
	@echo "MLflow tracking server: http://127.0.0.1:$(PORT)"
	$(BIN)/mlflow server --host 127.0.0.1 --port $(PORT) --workers 2 \
	  --backend-store-uri sqlite:///$(CURDIR)/mlflow-server.db --artifacts-destination $(CURDIR)/mlartifacts

# The multi-user backend: a local PostgreSQL (data/postgres, 127.0.0.1:5433) behind the same server.
mlflow-server-postgres: setup
	$(BIN)/python -m pip install -q psycopg2-binary==2.9.13
	@uri=$$(scripts/postgres_tracking.sh start) && echo "backend $$uri; MLflow tracking server: http://127.0.0.1:$(PORT)" && \
	$(BIN)/mlflow server --host 127.0.0.1 --port $(PORT) --workers 2 --backend-store-uri $$uri \
	  --artifacts-destination $(CURDIR)/mlartifacts

bench: bench-generator bench-loader bench-models bench-penalty bench-hessian

bench-generator: setup
	$(BIN)/python benchmarks/bench_generator.py

bench-loader: setup
	$(BIN)/python benchmarks/bench_loader.py

bench-models: setup
	$(BIN)/python benchmarks/bench_models.py

# The peers it measures against. curvlinops would pull a CUDA torch through backpack/torchvision: --no-deps.
HESSIAN_PEERS := pyhessian==0.1 curvlinops-for-pytorch==3.0.1 einops==0.8.2 einconv==0.1.0 linear_operator==0.6.1 \
	opt-einsum==3.4.0 unfoldNd==0.2.3 hessian-eigenthings==1.0.0a5

bench-hessian: setup
	$(BIN)/python -m pip install -q --no-deps $(HESSIAN_PEERS)
	$(BIN)/python benchmarks/bench_hessian.py

bench-penalty: setup
	$(BIN)/python benchmarks/bench_penalty.py

clean:
	rm -rf outputs multirun reports .pytest_cache
