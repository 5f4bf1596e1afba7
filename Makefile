# panorooms3d: the README's two commands are `make demo` and `make test`.
# Each sets everything up itself on a fresh machine: system packages (apt-get when root,
# otherwise it prints what to install), a Python 3.11 virtual environment in .venv, torch
# pinned (the CPU build where there is no CUDA), and this package in editable mode.
# A second run reinstalls nothing unless pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Where to find the CPU build of torch when no local wheel satisfies torch==$(TORCH_VERSION):
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Shared libraries that bpy (Blender) and open3d load.
SYS_PKGS := libusb-1.0-0 libgomp1 libegl1 libgl1 libopengl0 libsm6 libx11-6 libxext6 libxfixes3 \
            libxi6 libxkbcommon0 libxrender1 libxt6
PYTEST_ARGS ?=
export PYTHONUNBUFFERED := 1

.PHONY: setup sys-deps test demo bench lint clean help

help:
	@echo "make setup  - system packages (apt) and the virtual environment .venv with everything installed"
	@echo "make demo   - build a small synthetic dataset and run a tiny benchmark end to end (CPU)"
	@echo "make test   - run the test suite (installs everything it needs first)"
	@echo "make bench  - speed benchmarks (rendering, fusion, panoramas, dataset reads, models)"
	@echo "make lint   - ruff"
	@echo "make clean  - delete .venv, the caches, *.egg-info and the out/ folder"

setup: sys-deps $(STAMP)

sys-deps:
	@missing=""; for p in $(SYS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) \
	      || { echo "apt-get could not install:$$missing"; exit 1; }; \
	  else \
	    echo "panorooms3d needs these system packages; please run:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required (bpy 4.5 pins it): install python3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@if $(BIN)/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$(TORCH_VERSION)' else 1)" 2>/dev/null; then \
	  echo "torch $(TORCH_VERSION) already installed"; \
	elif rm -rf $(VENV)/.torch-wheel && $(BIN)/python -m pip download -q --no-index --no-deps "torch==$(TORCH_VERSION)" -d $(VENV)/.torch-wheel 2>/dev/null; then \
	  echo "installing torch $(TORCH_VERSION) from a local wheel"; \
	  $(BIN)/python -m pip install -q $(VENV)/.torch-wheel/torch-*.whl && rm -rf $(VENV)/.torch-wheel; \
	elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then \
	  $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)"; \
	else \
	  echo "no CUDA here: installing the CPU build of torch $(TORCH_VERSION)"; \
	  $(BIN)/python -m pip install -q "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	@bash pipelines/demo.sh

bench: setup
	@for s in benchmark/perf/bench_*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info out
