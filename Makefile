# The README's two commands are `make demo` and `make test`; each sets everything up first.
SHELL := /bin/bash
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_EC2_METADATA_DISABLED := true
export AWS_DEFAULT_REGION ?= us-east-1
VENV := .venv/bin
CONFIG ?= configs/sample.yaml

.PHONY: setup demo test lint synth bench

setup:
	@bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh $(CONFIG)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: setup lint
	$(VENV)/python -m pytest

synth: setup
	PATH=$(CURDIR)/.venv/bin:$$PATH npx cdk synth --quiet -c config=$(CONFIG)

bench: setup
	$(VENV)/python -m benchmarks
