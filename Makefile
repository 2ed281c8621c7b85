# The two commands of the README, and what they need. A fresh machine needs only python3.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: validate test lint bench clean

# Installs the package with its test extras into $(VENV) whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## validate: check the repository's own manifests (the main job until the daemon lands)
validate: $(VENV)/.installed
	$(BIN)/driftwarden validate manifests/

## test: the whole test suite (what CI runs)
test: $(VENV)/.installed
	$(BIN)/ruff check daemon tests $(wildcard benchmarks)
	$(BIN)/pytest -q -n 2

## bench: the validation benchmark (prints numbers; asserts nothing)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/validate.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
