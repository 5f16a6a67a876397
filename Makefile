# Two commands from a fresh clone: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0

.PHONY: venv test demo server lint bench clean-venv

venv: $(STAMP)

# torch first, pinned to the CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip show torch >/dev/null 2>&1 || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

test: venv
	$(PY) -m pytest -q

demo: venv
	$(VENV)/bin/ghosts demo

server: venv
	$(VENV)/bin/ghosts server

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) benchmarks/align_bench.py
	$(PY) benchmarks/pack_bench.py
	$(PY) benchmarks/train_bench.py
	$(PY) benchmarks/review_bench.py

clean-venv:
	rm -rf $(VENV)
