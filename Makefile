# mktlab: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
USERS ?= 1000000
SEED ?= 42

export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1

$(PY):
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(PY) java
	$(PY) -m pip install --quiet -e '.[all]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: java
java: ## check for Java 17+ (the Spark engine's JVM); install Debian's default-jre-headless when missing
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2; exit}' | awk -F. '{print ($$1 == "1" ? $$2 : $$1)}'); \
	if [ -n "$$v" ] && [ "$$v" -ge 17 ] 2>/dev/null; then \
	  echo "java: Java $$v found (the Spark engine needs 17+)"; \
	else \
	  echo "java: Java 17+ missing (found: $${v:-none}); installing Debian's default-jre-headless for the Spark engine"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ] || ! command -v apt-get >/dev/null; then \
	    echo "java: cannot install it here (needs apt-get, and root or sudo): install a Java 17+ runtime and set JAVA_HOME; until then resolve(engine='spark') and the Spark tests are unavailable (they skip)" >&2; \
	  else \
	    echo "+ $$SUDO apt-get update && $$SUDO apt-get install -y default-jre-headless"; \
	    ( $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null ) \
	      && echo "java: installed: $$(java -version 2>&1 | head -1)" \
	      || echo "java: apt-get could not install default-jre-headless: install Java 17+ by hand and set JAVA_HOME" >&2; \
	  fi; \
	fi

.PHONY: install
install: $(STAMP) ## create .venv and install mktlab with all extras (done by the other targets when needed)

.PHONY: demo
demo: $(STAMP) ## run the main job end to end on the embedded defaults (USERS=1000000 SEED=42)
	$(VENV)/bin/mktlab demo --users $(USERS) --seed $(SEED)

.PHONY: test
test: $(STAMP) ## run the test suite, notebooks included
	$(PY) -m pytest -q

.PHONY: test-fast
test-fast: $(STAMP) ## run the tests without the notebooks
	$(PY) -m pytest -q -m "not notebooks"

.PHONY: lab
lab: $(STAMP) ## open JupyterLab on notebooks/
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

.PHONY: serve
serve: $(STAMP) ## serve the @champion models on localhost:3000 (MKTLAB_SERVICE_PORT); `mktlab models import` first
	$(PY) -m mktlab.service.server

.PHONY: bento
bento: $(STAMP) ## build a Bento of the service into models/ (then: BENTOML_HOME=models bentoml serve mktlab:latest)
	$(PY) -m mktlab.service.server --build

.PHONY: bench
bench: $(STAMP) ## run every benchmark in benchmarks/ (full sizes; minutes)
	@set -e; for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f; done

.PHONY: redis-stop
redis-stop: $(STAMP) ## stop the embedded redis-server a killed process left running (`mktlab redis status` shows it)
	$(VENV)/bin/mktlab redis stop

.PHONY: lint
lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check mktlab tests benchmarks notebooks
	$(VENV)/bin/ruff format --check mktlab tests benchmarks

.PHONY: notebooks-sync
notebooks-sync: $(STAMP) ## regenerate .ipynb from the .py:percent twins, outputs stripped
	$(VENV)/bin/jupytext --sync notebooks/*.py

.PHONY: clean
clean: ## remove generated data, runs and models (keeps .venv)
	rm -rf data/raw/world data/interim/* data/processed/* mlruns/* models/*
