# ordermesh: `make run` starts the mesh, `make test` checks everything. Both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	@scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install ordermesh with its dev tools

.PHONY: run
run: $(STAMP) ## Start the whole mesh on localhost (embedded bus and PostgreSQL)
	$(VENV)/bin/ordermesh up

.PHONY: demo
demo: $(STAMP) ## Bots trade for a minute on a running `make run`, shown live (DEMO_FLAGS=--duration 20)
	$(VENV)/bin/ordermesh demo $(DEMO_FLAGS)

.PHONY: proto
proto: $(STAMP) ## Regenerate ordermesh/v1 from protos/
	$(PY) scripts/genproto.py

.PHONY: lint
lint: $(STAMP) ## ruff, mypy --strict, and the core purity check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/check_cores.py

.PHONY: test-unit
test-unit: $(STAMP) ## Unit and property tests; needs no servers
	$(VENV)/bin/pytest tests/unit -q

.PHONY: test
test: lint ## Everything: lint, unit, property and integration tests on real Kafka + PostgreSQL
	$(VENV)/bin/pytest -q

ROLLOUT_FLAGS ?= kubectl --overlays deploy/k8s/overlays --namespace ordermesh
.PHONY: rollout
rollout: $(STAMP) ## Blue-green rollout of the gateway (ROLLOUT_FLAGS="local ..." for nginx on this host)
	$(PY) -m ordermesh.rollout $(ROLLOUT_FLAGS)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks, interpreted and mypyc-compiled (writes bench/results/*.json)
	$(VENV)/bin/pip install -q -c requirements/constraints.txt -e '.[bench]'
	$(PY) scripts/build_native.py
	@for b in bench/*_bench.py; do echo "== $$b"; $(PY) $$b || exit 1; done

.PHONY: clean
clean: ## Remove the virtualenv, caches and build output (keeps the Kafka jar cache)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
