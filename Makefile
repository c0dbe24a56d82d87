# One entry point for people and CI. `make certify` and `make test` work on a
# fresh machine: they create .venv and install the project into it first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup certify test lint typecheck unit bench site clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	touch $(STAMP)

setup: $(STAMP)

certify: $(STAMP)
	./.ci/install-debian.sh
	$(BIN)/vpcid certify-bundled --reports reports

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	./.ci/install-debian.sh
	$(BIN)/pytest

test: lint typecheck unit

site: $(STAMP)
	$(BIN)/vpcid spec-site build/spec-site

bench: $(STAMP)
	$(BIN)/python benchmarks/access_cost.py
	$(BIN)/python benchmarks/engine_throughput.py
	$(BIN)/python benchmarks/bridge_cost.py
	$(BIN)/python benchmarks/cython_speed.py
	$(BIN)/python benchmarks/kvm_rates.py --cython
	$(BIN)/python benchmarks/vfio_user_rates.py
	$(BIN)/python benchmarks/qemu_rates.py

clean:
	rm -rf $(VENV)
