# The two commands: `make reproduce` and `make test` (each creates .venv when missing).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= mini
STAMP   := $(VENV)/.nuwa-installed

.PHONY: venv reproduce test unit pipeline-check nbval golden lab clean

venv: $(STAMP)

# Reinstalls when pyproject.toml changes. torch/torchvision are pinned there.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name nuwa --display-name "Python (nuwa)" >/dev/null
	@touch $(STAMP)

## Run every notebook with $(PROFILE) (default mini) into results/$(PROFILE)/.
reproduce: venv
	$(VENV)/bin/nuwa-repro --profile $(PROFILE)

## Unit tests, the smoke pipeline compared with the committed tables, and nbval on
## the golden notebooks. Writes only into git-ignored build/.
test: venv unit pipeline-check nbval

unit: venv
	$(PY) -m pytest tests -q -p no:cacheprovider

pipeline-check: venv
	rm -rf build/ci-results
	$(VENV)/bin/nuwa-repro --profile smoke --out build/ci-results \
		--compare-to results/smoke/tables --no-progress

nbval: venv
	rm -rf build/nbval-results
	NUWA_RESULTS_DIR=build/nbval-results $(PY) -m pytest -q -p no:cacheprovider \
		--nbval-lax --nbval-current-env results/smoke/notebooks

## Regenerate the committed smoke golden notebooks and tables (after a deliberate change).
golden: venv
	$(VENV)/bin/nuwa-repro --profile smoke

## Browse and run the notebooks interactively.
lab: venv
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean:
	rm -rf build
