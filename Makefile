# xclip-cli developer tasks. `make install` creates .venv; everything else uses it.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# The CPU build of torch on the project's machines; on a GPU machine use e.g. `make install TORCH=torch`.
TORCH ?= torch==2.13.0
CODE := $(wildcard xclip_cli tests benchmarks scripts)

.PHONY: install test test-heavy test-runtime test-slow lint format bench clean
# Test workers: one per core, 4 at most (each builds the session's tiny checkpoints and exports one for ONNX Runtime).
WORKERS := -n auto --maxprocesses 4

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[torch,dev]"
	@echo "Installed. Try: $(VENV)/bin/xclip --help"

test:  # the offline suite without the heavy and slow tests: about 4 minutes on 2 cores
	$(PY) -m pytest -q $(WORKERS)

test-heavy:  # clusters, fresh processes, browsers, ONNX exports: about 5 minutes on 2 cores
	$(PY) -m pytest -q $(WORKERS) -m heavy

test-runtime:  # a fresh venv with only the runtime install (no torch) runs a prepared model: about 2 minutes
	$(PY) -m pytest -q -m runtime

test-slow:  # the full-size (base-patch32 shape) equivalence checks, torch and ONNX Runtime: about 4 minutes
	$(PY) -m pytest -q -m slow

lint:
	$(VENV)/bin/ruff check $(CODE)
	$(VENV)/bin/ruff format --check $(CODE)
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff check --fix $(CODE)
	$(VENV)/bin/ruff format $(CODE)

bench:  # classify one video, then the scan path, each against the transformers recipe (benchmarks/common.py lists the others)
	$(PY) benchmarks/bench_classify.py
	$(PY) benchmarks/bench_scan.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
