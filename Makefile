# The two commands a new user runs: `make run` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup setup-lava run test bench lint data test-deps clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps spikingjelly==2.0.0
	@echo "building the compiled CPU kernels (once per machine)"
	$(PY) -c "from spikeformer.kernels import cpu as kernels; kernels.get() or print('note: compiled kernels unavailable:', kernels.unavailable_reason())"
	touch $(STAMP)

setup: $(STAMP) data

# Lava (lava-nc 0.10 needs Python 3.10) in its own environment for the fixed-point cross-check of the loihi2-emu
# backend; made only where pyenv has 3.10 (or PYTHON310 names an interpreter). About 20 s with a warm pip cache.
PYTHON310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10*/bin/python) $(shell command -v python3.10))
LAVA_VENV ?= .venv-lava
setup-lava:
	@if [ -z "$(PYTHON310)" ]; then echo "note: no Python 3.10 found (pyenv install 3.10); Lava cross-check skipped"; \
	elif [ ! -f $(LAVA_VENV)/.installed ]; then \
	  ( $(PYTHON310) -m venv $(LAVA_VENV) && $(LAVA_VENV)/bin/pip install -q --upgrade pip && \
	    $(LAVA_VENV)/bin/pip install -q lava-nc==0.10.0 && touch $(LAVA_VENV)/.installed ) || \
	  { echo "note: installing lava-nc failed; the Lava cross-check will be skipped"; rm -rf $(LAVA_VENV); }; fi

# Debian packages: Fashion-MNIST (dataset-fashion-mnist) for `make run`; the tests also need a PostgreSQL server.
# Installed only when missing and when we are root; otherwise the commands that need them say how to get them.
define apt_ensure
	@missing=""; for pair in $(1); do pkg=$${pair%%:*}; path=$${pair#*:}; \
	  ls $$path >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get install -y -qq $$missing || (apt-get update -qq && apt-get install -y -qq $$missing)) >/dev/null; \
	  else echo "note: missing Debian packages:$$missing (sudo apt-get install$$missing)"; fi; \
	fi
endef

data:
	$(call apt_ensure,dataset-fashion-mnist:/usr/share/datasets/fashion-mnist)

test-deps:
	$(call apt_ensure,dataset-fashion-mnist:/usr/share/datasets/fashion-mnist postgresql:/usr/lib/postgresql/*/bin/initdb prometheus:/usr/bin/promtool prometheus-alertmanager:/usr/bin/amtool chromium:/usr/bin/chromium)

# The main job: the inference service with the bundled model (models/), SQLite under ./var, the CPU backend.
# The checkout's models/ is passed explicitly: the installed default is $SPIKEFORMER_HOME/models (./var/models).
run: setup
	$(VENV)/bin/spikeformer serve --host 127.0.0.1 --port 8000 --model-repository models

test: setup test-deps setup-lava
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest

bench: setup
	$(PY) bench/speed_cpu.py
	$(PY) bench/load.py
	@if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  $(PY) bench/speed_gpu.py --compile --out runs/bench-gpu; \
	else echo "no CUDA device here: bench/speed_gpu.py skipped (docs/benchmarks.md has the H200 figures)"; fi

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
