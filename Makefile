# Two commands from a fresh clone: `make demo` and `make test`. Both create or reuse .venv, installed from
# requirements.lock (exact versions of every package), so a new release upstream cannot change a working install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
PIP_VERSION := 26.3
# The torch release `make lock` pins (its CPU build). Change it here, then `make lock`.
TORCH_RELEASE := 2.13.0
# torch as the lock has it: the CPU build (e.g. torch==2.13.0+cpu), and its release without the local label.
TORCH_PIN := $(shell grep -m1 '^torch==' $(LOCK) 2>/dev/null)
TORCH_VERSION := $(shell sed -n 's/^torch==\([^+ ]*\).*/\1/p' $(LOCK) 2>/dev/null)
# A PyTorch wheel index to take torch from instead of the lock's CPU build, e.g. on a GPU box
# `make venv TORCH_INDEX=https://download.pytorch.org/whl/cu128`: torch $(TORCH_VERSION) and the CUDA libraries it
# needs come from there, everything else from the lock.
TORCH_INDEX ?=
# Where `make lock` finds torch's CPU build: pip's find-links (this machine's wheel folder), else PyTorch's CPU index.
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell python3 -m pip config get global.find-links 2>/dev/null))
LOCK_TORCH_FROM ?= $(if $(FIND_LINKS),$(addprefix --find-links ,$(FIND_LINKS)),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

.PHONY: venv test demo server lint format bench clean-venv lock lock-upgrade

venv: $(STAMP)

# torch first, alone: a bare `torch` requirement from PyPI is the multi-GB CUDA build. A torch of the locked
# release already there (a CUDA build installed by hand, say) is kept. Then the rest of the lock, without
# dependency resolution (the lock is complete: `pip check` proves it), then ghosts itself, built with the
# locked setuptools.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	@if [ "$$($(PY) -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])' 2>/dev/null)" \
	      = "$(TORCH_VERSION)" ]; then echo "torch $(TORCH_VERSION) already installed: kept"; \
	elif [ -n "$(TORCH_INDEX)" ]; then \
	  echo "installing torch $(TORCH_VERSION) from $(TORCH_INDEX)"; $(PY) -m pip install --quiet --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION); \
	else \
	  echo "installing $(TORCH_PIN)"; $(PY) -m pip install --quiet --no-deps $(TORCH_PIN) || { echo "make: $(TORCH_PIN) was not found;" \
	    "take it from PyTorch's CPU index: make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu" >&2; exit 1; }; \
	fi
	grep -v '^torch==' $(LOCK) > $(VENV)/lock-without-torch.txt
	$(PY) -m pip install --quiet --no-deps -r $(VENV)/lock-without-torch.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $(STAMP)

# Re-resolve the lock after editing pyproject.toml; pins that still fit are kept. `make lock-upgrade` moves
# every package to the newest release pyproject.toml allows. Then run `make test` and commit the lock.
lock: LOCK_FLAGS :=
lock-upgrade: LOCK_FLAGS := --upgrade
lock lock-upgrade:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet "$$(grep -m1 '^uv==' $(LOCK) 2>/dev/null || echo uv)"
	@printf 'torch==%s+cpu\n' "$(TORCH_RELEASE)" > $(VENV)/torch-cpu.txt
	$(PY) -m uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 $(LOCK_TORCH_FROM) --constraint $(VENV)/torch-cpu.txt \
	  --custom-compile-command "make lock" --quiet --output-file $(LOCK)
	@! grep -Eq '^(nvidia-|triton==)' $(LOCK) || { echo "make: the lock has CUDA packages: torch's CPU build" \
	  "was not found (see LOCK_TORCH_FROM)" >&2; exit 1; }

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/ghosts demo

server: venv
	$(VENV)/bin/ghosts server

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .

# Every benchmark, one after another, each printing its own figures (docs/benchmarks.md records them, with the
# load). The issue figures: pack_command_bench (ghosts pack against a dataset_tool-like packer), freeze_bench
# (freeze of 1,000 faces against a pack of the same faces), align_command_bench (ghosts align against the plain
# FFHQ recipe) and analyze_bench (10,000 Instagram-sized photos: builds its workspace first, the longest).
bench: venv
	$(PY) benchmarks/pack_command_bench.py
	$(PY) benchmarks/freeze_bench.py
	$(PY) benchmarks/align_command_bench.py
	$(PY) benchmarks/analyze_bench.py
	$(PY) benchmarks/align_bench.py
	$(PY) benchmarks/pack_bench.py
	$(PY) benchmarks/identity_bench.py
	$(PY) benchmarks/gate_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/review_bench.py

clean-venv:
	rm -rf $(VENV)
