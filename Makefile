# The two commands: `make quickstart` and `make test`. Both set up .venv first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QUICKSTART_DIR ?= quickstart

.PHONY: setup test test-fast test-long lint faults browser quickstart e2e stack-up stack-down bench cpu-model clean

setup: $(STAMP)

# Re-install only when the dependencies change; the package itself is editable.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

test: setup browser
	$(PY) -m pytest

# The loop while working (under 3 minutes): no Ray session, no servers, nothing marked slow.
test-fast: setup
	$(PY) -m pytest -q -x -m 'not faults and not servers and not slow and not long' -p no:cacheprovider

# The whole flows, minutes each: make e2e --quick through the local stack, make quickstart's screen.
test-long: setup
	$(PY) -m pytest -m long

lint: setup
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

# Real faults on a two-node Ray cluster of real processes (tests/faults, docs/reliability.md).
faults: setup
	$(PY) -m pytest -m faults tests/faults

# The rating page's test drives a real headless Chromium, the OS package (playwright, a dev
# dependency, uses it and downloads no browser). Without it that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1))) || \
		echo "note: chromium not installed; the rating page's browser test will skip"

# Ray's start-up chatter about usage stats and auth is noise here.
quickstart: setup
	RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled $(PY) -m pipeline.quickstart --out $(QUICKSTART_DIR)

# The CPU recipe (configs/cpu_x4.yaml): a real SRGAN x4 in about 30 minutes on 2 cores, scored
# on Set5 and put to the promotion gate (benchmarks/cpu_recipe.py; figures in docs/benchmarks.md).
cpu-model: setup
	$(PY) benchmarks/cpu_recipe.py

# The local stack (S3 API + MLflow server on 127.0.0.1) and the flow through it on a local Ray head.
stack-up: setup
	$(PY) infra/local/stack.py up

stack-down:
	$(PY) infra/local/stack.py down

e2e: setup
	VENV=$(VENV) infra/local/e2e.sh $(E2E_ARGS)

# The references (Real-ESRGAN's inference helper) go into the venv for benchmarks only.
bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m pip install --quiet --no-deps basicsr realesrgan opencv-python-headless tqdm
	$(PY) benchmarks/degrade.py
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/upscale.py
	$(PY) benchmarks/niqe.py
	$(PY) benchmarks/prepare.py
	$(PY) benchmarks/precision.py

clean:
	rm -rf $(QUICKSTART_DIR) .pytest_cache ray_results .stack cpu-model
