# triton-operator: every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo down test test-unit lint crds binaries prereqs bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

binaries:  ## build (or reuse) the cached etcd, Kubernetes, kwok binaries
	hack/build-cluster-binaries.sh all

prereqs: binaries  ## everything the test tiers run: node packages (apt, as root), host Triton, Prometheus, CPU Triton image
	hack/install-node-packages.sh
	hack/install-triton-host.sh >/dev/null
	hack/install-prometheus.sh >/dev/null
	hack/build-helm.sh >/dev/null
	hack/build-triton-image.sh >/dev/null
	hack/build-operator-image.sh >/dev/null

demo: $(STAMP) prereqs  ## local cluster + real node + operator; quickstart applied, Ready, status, a real inference
	$(BIN)/triton-operator dev up --example examples/quickstart.yaml

down: $(STAMP)  ## stop everything `make demo` started
	$(BIN)/triton-operator dev down

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/mypy

test-unit: $(STAMP)  ## the fast tier only
	$(BIN)/python -m pytest -m unit -q

test: $(STAMP) prereqs lint  ## everything: lint, types, every test tier
	$(BIN)/python -m pytest -q

crds: $(STAMP)  ## regenerate crds/ from the API models
	$(BIN)/triton-operator crds -o crds/inferenceservices.serving.triton-operator.dev.yaml

bench: $(STAMP) binaries  ## B1-B3 on the local control plane (writes benchmarks/results/)
	$(BIN)/python benchmarks/bench_control_plane.py

clean:  ## remove the venv (the binary cache in ~/.cache/triton-operator stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
