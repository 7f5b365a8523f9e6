# Two entry points a new user needs: `make quickstart` runs the example pipeline locally on CPU,
# `make test` runs linters, type checks and the whole test suite. Both create .venv on first use
# with the CPU build of torch (pinned in constraints-dev.txt).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint typecheck pytest tools venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[train,dev]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/kubetune run -f examples/quickstart --workdir .kubetune/quickstart

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# helm for the chart tests (tests/unit/test_helm_chart.py), unpacked into .tools/bin; KServe's
# Python SDK for the InferenceService schema oracle (tests/helpers/kserve_schema.py), unpacked
# into .tools/kserve-sdk.
tools: $(STAMP)
	$(BIN)/python scripts/fetch_tools.py helm || test -z "$$CI"
	$(BIN)/python scripts/fetch_tools.py kserve-sdk || test -z "$$CI"

pytest: $(STAMP) tools
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# The install tier (tests/install) against the real cluster of KUBECONFIG: helm installs the chart
# there and the cluster's kubelet runs the images, so build and load them first and point the
# chart at them with KUBETUNE_INSTALL_VALUES=values.yaml (see .github/workflows/cluster.yaml).
.PHONY: test-cluster
test-cluster: $(STAMP) tools
	@test -n "$$KUBECONFIG" || { echo "test-cluster: set KUBECONFIG to the cluster to install into" >&2; exit 2; }
	$(BIN)/python -m pytest tests/install -m cluster -q

clean:
	rm -rf $(VENV) .tools .kubetune .pytest_cache .mypy_cache .ruff_cache
