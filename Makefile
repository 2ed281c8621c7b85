# The two commands of the README, and what they need. A fresh machine needs only python3.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

LOWEST_VENV ?= .venv-lowest

.PHONY: run validate test test-lowest lint bench clean image-smoke image-lock

# What each command needs, each with its own marker in $(VENV), redone when pyproject.toml
# changes: `run` and `validate` the package with the sandbox extra (no test tools); `test`,
# `bench` and `image-lock` the package with its test extras (dev).
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sandbox]'
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: the daemon over the repository's own manifests/, on the embedded simulated AWS
run: $(VENV)/.installed-run
	$(BIN)/driftwarden run --sandbox --source manifests --interval 30s --drift-interval 1m --metrics-port 9108 --log-format text --sandbox-drift-every 2m

## validate: check the repository's own manifests
validate: $(VENV)/.installed-run
	$(BIN)/driftwarden validate manifests/

## test: the whole test suite (what CI runs): lint, import contracts, types, then the tests
test: $(VENV)/.installed
	$(BIN)/ruff check daemon tests $(wildcard benchmarks)
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2

## test-lowest: the tests that reach every dependency, on the LOWEST versions pyproject.toml
## allows (a fresh venv of its own, the package installed as a user would, not editable)
# ruamel and jsonschema: loader and validation; gitpython: source; prometheus-client: metrics;
# boto3 and moto: aws (with the sandbox's moto internals); apscheduler and the whole sandbox:
# `run --sandbox`; every provider against moto: one full apply from empty accounts.
LOWEST_TESTS := tests/test_aws.py tests/test_loader.py tests/test_validation.py tests/test_source.py \
	tests/test_metrics.py \
	tests/test_daemon.py::test_run_sandbox_serves_status_and_metrics_against_an_embedded_aws \
	tests/test_reconcile.py::test_apply_creates_the_footprint_then_plan_is_empty_and_a_second_apply_mutates_nothing
test-lowest:
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(PYTHON) scripts/lowest-constraints.py >$(LOWEST_VENV)/constraints.txt
	$(LOWEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/pip install --quiet --constraint $(LOWEST_VENV)/constraints.txt '.[sandbox]' pytest pytest-xdist hypothesis
	$(LOWEST_VENV)/bin/python scripts/lowest-constraints.py --check
	$(LOWEST_VENV)/bin/pytest -q -p no:cacheprovider -n 2 $(LOWEST_TESTS)

## image-smoke: build the production and the sandbox image with buildah, print their sizes and check
## them (as root; installs buildah/debootstrap)
image-smoke:
	scripts/container-smoke.sh

## image-lock: re-pin deploy/container/requirements.lock and requirements-sandbox.lock from .venv
## after changing dependencies
image-lock: $(VENV)/.installed
	scripts/container-smoke.sh --update-lock

## bench: the benchmarks (print numbers; assert nothing)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/validate.py
	$(BIN)/python benchmarks/reconcile.py

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .pytest_cache .ruff_cache
