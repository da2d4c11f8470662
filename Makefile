# The two commands: `make quickstart` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICKSTART_DIR ?= quickstart

.PHONY: setup test quickstart bench clean

setup: $(STAMP)

# Re-install only when the dependencies change; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest

quickstart: setup
	$(PY) -m pipeline.samples --out $(QUICKSTART_DIR)/samples
	$(PY) -m pipeline.evaluate --model bicubic --data $(QUICKSTART_DIR)/samples --scale 4 --grid $(QUICKSTART_DIR)/bicubic_grid.png

bench: setup
	$(PY) benchmarks/degrade.py

clean:
	rm -rf $(QUICKSTART_DIR) .pytest_cache
