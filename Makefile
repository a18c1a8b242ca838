# Fresh-machine entry points: `make run` (main job, embedded default) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint format bench lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"

# torch goes first, from the CPU wheel on disk: any later package that needs torch
# would otherwise pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/interest-graph run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/baselines.py --quick
	$(BIN)/python bench/quality.py --quick
	$(BIN)/python bench/train_speed.py --quick
	$(BIN)/python bench/tune.py --quick
	$(BIN)/python bench/serve.py --quick

# Re-resolve the whole platform's lock (needs the package registry).
lock: $(BIN)/python
	$(PIP) install --dry-run --ignore-installed --report $(VENV)/lock.json -q \
	  torch==2.13.0 -e ".[all,dev]"
	$(BIN)/python scripts/write_constraints.py $(VENV)/lock.json constraints.txt

clean:
	rm -rf $(VENV) .work .mypy_cache .ruff_cache .pytest_cache
