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
	$(BIN)/mypy src bench

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# checkov, the manifests' second opinion (tests/unit/test_manifests.py), lives in a
# venv of its own: its pins clash with constraints.txt.
TOOLS := .work/tools-venv
CHECKOV_VERSION := 3.3.30

$(TOOLS)/bin/checkov:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION)

test: lint $(TOOLS)/bin/checkov
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

# Container images (components/Dockerfile, serving/Dockerfile), tagged with the
# project version. Air-gapped, as on the CI machine:
#   make images BASE_IMAGE=local/debian:bookworm     (../shared/tools/docker-up.sh)
# IMAGES: which to build. BASE_IMAGE: empty keeps each Dockerfile's pinned default.
# WHEELS_DIR: a folder of wheels (this machine's CPU torch in /opt/wheels) imported
# as an image for the Dockerfiles' `wheels` stage; CPU builds only, since it holds
# the +cpu torch. TORCH_VARIANT=cuda builds the component image's GPU variant (tag
# VERSION-cuda). The CA bundle goes in as the build secret `pipca` (TLS proxy).
PROJECT_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DOCKER ?= /usr/bin/docker
IMAGES ?= components serving
BASE_IMAGE ?=
TORCH_VARIANT ?= cpu
WHEELS_DIR ?= $(wildcard /opt/wheels)
WHEELS_IMAGE := interest-graph-wheels:local
PIP_CA := $(wildcard /etc/ssl/certs/ca-certificates.crt)
comma := ,
COMPONENTS_TAG := interest-graph-components:$(PROJECT_VERSION)$(if $(filter cuda,$(TORCH_VARIANT)),-cuda)
SERVING_TAG := interest-graph-serving:$(PROJECT_VERSION)
IMAGE_BUILD = DOCKER_BUILDKIT=1 $(DOCKER) build --network host \
  $(if $(PIP_CA),--secret id=pipca$(comma)src=$(PIP_CA)) \
  $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
  --build-arg VERSION=$(PROJECT_VERSION) \
  --build-arg SOURCE_URL=$(or $(shell git config --get remote.origin.url),unknown)

.PHONY: images
images:
ifneq ($(WHEELS_DIR),)
	tar -C $(WHEELS_DIR) -c . | $(DOCKER) import - $(WHEELS_IMAGE) >/dev/null
endif
	$(if $(filter components,$(IMAGES)),$(IMAGE_BUILD) \
	  $(if $(and $(WHEELS_DIR),$(filter cpu,$(TORCH_VARIANT))),--build-arg WHEELS_IMAGE=$(WHEELS_IMAGE)) \
	  --build-arg TORCH_VARIANT=$(TORCH_VARIANT) -f components/Dockerfile -t $(COMPONENTS_TAG) .)
	$(if $(filter serving,$(IMAGES)),$(IMAGE_BUILD) \
	  $(if $(WHEELS_DIR),--build-arg WHEELS_IMAGE=$(WHEELS_IMAGE)) \
	  -f serving/Dockerfile -t $(SERVING_TAG) .)

clean:
	rm -rf $(VENV) .work .mypy_cache .ruff_cache .pytest_cache
