# The two commands of the README, and what they need. A fresh machine needs only python3.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run validate test lint bench clean image-smoke image-lock

# Installs the package with its test extras into $(VENV) whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: the daemon over the repository's own manifests/, on the embedded simulated AWS
run: $(VENV)/.installed
	$(BIN)/driftwarden run --sandbox --source manifests --interval 30s --drift-interval 1m --metrics-port 9108 --log-format text --sandbox-drift-every 2m

## validate: check the repository's own manifests
validate: $(VENV)/.installed
	$(BIN)/driftwarden validate manifests/

## test: the whole test suite (what CI runs): lint, import contracts, types, then the tests
test: $(VENV)/.installed
	$(BIN)/ruff check daemon tests $(wildcard benchmarks)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2

## image-smoke: build the Dockerfile with buildah and check the image (as root; installs buildah/debootstrap)
image-smoke:
	scripts/container-smoke.sh

## image-lock: re-pin deploy/container/requirements.lock from .venv after changing dependencies
image-lock: $(VENV)/.installed
	scripts/container-smoke.sh --update-lock

## bench: the benchmarks (print numbers; assert nothing)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/reconcile.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
