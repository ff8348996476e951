# Two commands matter: `make demo` and `make test`. Both build .venv themselves and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench clean

# setup.py and the C sources: the optional extensions are built by this install (in place).
$(STAMP): pyproject.toml setup.py $(wildcard src/meterseal/*/native/*.c)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meterseal demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy src tests
	for script in tests/vectors/*/derive.py; do $(BIN)/mypy "$$script" || exit 1; done

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/meterseal bench crypto

.PHONY: meter
meter: $(STAMP)  # the C meter program the integrity monitor protects (gcc)
	$(BIN)/meterseal integrity build var/integrity/meter

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
