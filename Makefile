# bsgd: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU build by default (on the project's machines it comes from local disk). For a GPU, e.g.:
#   make install TORCH_SPEC="torch" or TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.bsgd-installed
DEMO_DIR ?= demo
# GPU slots (docs/GPU.md): the data folder that travels with `carry`, the Python that runs there
# (the slot has no .venv: its own python3 with torch), and where a slot resumes from.
DEVICE_DATA ?= .device-data
SHARED_DATA ?= ../shared/data
DEVICE_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
DEVICE_DATA_ARGS ?=
STATE_DIR ?= training/gpu

.PHONY: install test test-fast lint demo clean device-data device-train

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

# The inner loop: everything but the tests marked slow (subprocesses, kills, DDP, training runs).
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

DEVICE_SCRIPTS := scripts/device_data.py scripts/device_train.py scripts/device_unpack.py

lint: install
	$(BIN)/ruff check bsgd_cli tests $(DEVICE_SCRIPTS)
	$(BIN)/mypy bsgd_cli $(DEVICE_SCRIPTS)
	$(BIN)/lint-imports

demo: install
	$(BIN)/bsgd samples $(DEMO_DIR)/noisy --count 4
	$(BIN)/bsgd denoise $(DEMO_DIR)/noisy -o $(DEMO_DIR)/clean --compare
	@echo "Denoised photos are in $(DEMO_DIR)/clean (before/after views: *_compare.png)"

# Copy the slot's training crops and evaluation pairs into $(DEVICE_DATA) (ignored; never commit it).
device-data: install
	$(BIN)/python scripts/device_data.py --shared $(SHARED_DATA) --dest $(DEVICE_DATA) $(DEVICE_DATA_ARGS)

# One GPU slot: train, distil, benchmark, time; files into $(OUT). DRY_RUN=1: the same path on the CPU.
# No install step: the slot runs it with its own python3 (PYTHONPATH=. finds bsgd_cli).
device-train:
	@test -n "$(OUT)" || { echo "set OUT to an empty folder (the device tool sets it)"; exit 2; }
	PYTHONUNBUFFERED=1 PYTHONPATH=.$(if $(PYTHONPATH),:$(PYTHONPATH)) DRY_RUN=$(DRY_RUN) $(DEVICE_PYTHON) \
		scripts/device_train.py --out "$(OUT)" --data $(DEVICE_DATA) --state-dir $(STATE_DIR)

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache
