# bsgd: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU build by default (on the project's machines it comes from local disk). For a GPU, e.g.:
#   make install TORCH_SPEC="torch" or TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.bsgd-installed
DEMO_DIR ?= demo

.PHONY: install test lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check bsgd_cli tests
	$(BIN)/mypy bsgd_cli

demo: install
	$(BIN)/bsgd samples $(DEMO_DIR)/noisy --count 4
	$(BIN)/bsgd denoise $(DEMO_DIR)/noisy -o $(DEMO_DIR)/clean --compare
	@echo "Denoised photos are in $(DEMO_DIR)/clean (before/after views: *_compare.png)"

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache
