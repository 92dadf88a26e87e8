# The two commands: `make reproduce` and `make test` (each creates .venv when missing); the third,
# `make retrain`, trains the shipped models afresh.
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= mini
STAMP   := $(VENV)/.nuwa-installed

.PHONY: venv reproduce retrain record-check reproduce-other-cpu test test-other-cpu unit pipeline-check determinism determinism-run determinism ci-nbval no-browser nbval test-browser golden spread spread-kernels spread-seeds lab clean

# The browser test's Chromium (Debian's `chromium`; never a Playwright download).
CHROMIUM ?= $(shell command -v chromium)
# `make lab`: loopback only, so no token; results of interactive runs stay out of results/.
LAB_PORT    ?= 8888
LAB_RESULTS ?= build/lab-results

# GPU=1 keeps the PyTorch $(PYTHON) already has (a CUDA build within pyproject.toml's range):
# the venv sees $(PYTHON)'s site-packages and pip is held to that torch (and its torchvision and
# triton, when there) instead of constraints.txt. A venv made so stays so: later commands need
# no GPU=1.
GPU ?= $(if $(shell grep -s 'include-system-site-packages = true' $(VENV)/pyvenv.cfg),1,0)
# the torch, torchvision and triton already installed, as pins (empty when there is none)
KEEP_TORCH = import importlib.metadata as m; names = ("torch", "torchvision", "triton"); \
	print("\n".join(f"{n}=={m.version(n)}" for n in names if list(m.distributions(name=n))))
GPU_VENV_CHECK = grep -qs 'include-system-site-packages = true' $(VENV)/pyvenv.cfg || { echo \
	"make: $(VENV) was made without GPU=1 and has its own torch; rm -rf $(VENV), run again" >&2; exit 1; }

## Create .venv and install: exactly the versions CI tests (constraints.txt), or with GPU=1
## the package around the PyTorch already installed.
venv: $(STAMP)
ifeq ($(GPU),1)
	@$(GPU_VENV_CHECK)
endif

# Reinstalls when pyproject.toml or constraints.txt changes.
$(STAMP): pyproject.toml constraints.txt
ifeq ($(GPU),1)
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(GPU_VENV_CHECK)
	$(PY) -c '$(KEEP_TORCH)' >$(VENV)/keep-torch.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(VENV)/keep-torch.txt -e '.[test]'
else
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
endif
	$(PY) -m ipykernel install --sys-prefix --name nuwa --display-name "Python (nuwa)" >/dev/null
	@touch $(STAMP)

## Run every notebook with $(PROFILE) (default mini) into results/$(PROFILE)/, evaluating the
## shipped models of results/$(PROFILE)/weights/ (smoke ships none: it trains its own).
reproduce: venv
	$(VENV)/bin/nuwa-repro --profile $(PROFILE)

## Train every shipped model of $(PROFILE) afresh (STAGES="t2i s2v" for some; `nuwa-repro --list`
## names them), ship them with their manifest into results/$(PROFILE)/weights/ stage by stage
## (an interrupted retrain resumes), then regenerate the record from them.
STAGES ?=
retrain: venv
	$(VENV)/bin/nuwa-repro --profile $(PROFILE) --retrain $(STAGES)
	$(VENV)/bin/nuwa-repro --profile $(PROFILE)

## A slice of the shipped mini record re-evaluated from its weights: notebook 04's readout and
## notebook 12's TV2V table, against the committed tables (exact where nothing is sampled;
## sampled and judged cells within the band of the record and its other-CPU re-evaluation).
record-check: venv
	rm -rf build/record-check build/record-check-artifacts
	NUWA_ARTIFACTS_DIR=build/record-check-artifacts $(VENV)/bin/nuwa-repro --profile mini \
		--only 04 12 --out build/record-check --compare-to results/mini/tables --same-weights \
		--no-progress
	$(DONE)

## The record re-evaluated as another CPU would (ATen's portable kernels) from the same shipped
## weights, its tables and metrics kept as results/$(PROFILE)-other-cpu/, then this record's
## summary again, which shows both runs' verdicts side by side. The compute study (notebook 14)
## decides no claim, so it is left out.
reproduce-other-cpu: venv
	rm -rf build/other-cpu build/other-cpu-artifacts
	ATEN_CPU_CAPABILITY=default NUWA_ARTIFACTS_DIR=build/other-cpu-artifacts \
		$(VENV)/bin/nuwa-repro --profile $(PROFILE) --out build/other-cpu --skip 14_compute_study
	rm -rf results/$(PROFILE)-other-cpu && mkdir -p results/$(PROFILE)-other-cpu
	cp -r build/other-cpu/$(PROFILE)/tables build/other-cpu/$(PROFILE)/metrics results/$(PROFILE)-other-cpu/
	$(VENV)/bin/nuwa-repro --profile $(PROFILE) --only 15_summary

## Unit tests; the smoke pipeline from an empty artifact cache, its tables compared with the
## committed results/smoke/tables/ (exact where nothing is trained, within the band of the
## committed reference runs where it is); notebooks 01-02 rerun from another empty cache with one
## worker, which must give byte-identical tables; nbval on the golden notebooks; a slice of the shipped mini record
## re-evaluated from its weights (the unit tests check every shipped file against its manifest);
## the browser test when a Chromium is there. Writes only into git-ignored build/.
## Most steps run one process at a time, so two run at once (make -j2): the unit tests, the
## record slice and the browser test beside the smoke pipeline and what reads its models
## (determinism, nbval). Each step's output is printed whole when it ends (--output-sync).
TEST_JOBS ?= 2
BROWSER_STEP = $(if $(CHROMIUM),test-browser,no-browser)
test: venv
	@NUWA_TEST_T0=$$(date +%s) $(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target \
		unit pipeline-check determinism ci-nbval record-check $(BROWSER_STEP)

## What another CPU does: the pipeline, determinism, nbval and record steps of `make test` with
## ATen's portable kernels instead of this CPU's (AVX2/AVX-512), against the same committed goldens.
test-other-cpu: venv
	@NUWA_TEST_T0=$$(date +%s) ATEN_CPU_CAPABILITY=default $(MAKE) --no-print-directory \
		-j$(TEST_JOBS) --output-sync=target pipeline-check determinism ci-nbval record-check

# the last line of each step within `make test`: when it ended
DONE = @[ -z "$$NUWA_TEST_T0" ] || echo "make $@: done, $$(( $$(date +%s) - NUWA_TEST_T0 )) s into the run"

# within `make test`, nbval reads the models pipeline-check trained: it waits for it
ci-nbval: pipeline-check
	@$(MAKE) --no-print-directory nbval
	$(DONE)

no-browser:
	@echo "make test: no chromium on PATH, browser test skipped (Debian: apt-get install chromium)"
	$(DONE)

unit: venv
	$(PY) -m pytest tests -q -p no:cacheprovider --ignore=tests/browser
	$(DONE)

# models trained by pipeline-check; nbval re-executes the goldens with them
CI_ARTIFACTS := build/ci-artifacts

pipeline-check: venv
	rm -rf build/ci-results $(CI_ARTIFACTS)
	NUWA_ARTIFACTS_DIR=$(CI_ARTIFACTS) $(VENV)/bin/nuwa-repro --profile smoke --out build/ci-results \
		--compare-to results/smoke/tables --no-progress
	$(DONE)

determinism: pipeline-check
	rm -rf build/det-results build/det-artifacts
	NUWA_ARTIFACTS_DIR=build/det-artifacts $(VENV)/bin/nuwa-repro --profile smoke --only 01 02 \
		--workers 1 --out build/det-results --identical-to build/ci-results/smoke/tables --no-progress
	$(DONE)

nbval: venv
	rm -rf build/nbval-results
	NUWA_ARTIFACTS_DIR=$(CI_ARTIFACTS) NUWA_RESULTS_DIR=build/nbval-results $(PY) -m pytest -q \
		-p no:cacheprovider --nbval-lax --nbval-current-env results/smoke/notebooks

## JupyterLab in headless Chromium: the notebook list, notebook 03's explorer reacting to its
## controls and notebook 04's "watch it draw" panel. Screenshots go to build/browser/.
test-browser: venv
	@if [ -z "$(CHROMIUM)" ]; then echo "make test-browser: no chromium on PATH (Debian: apt-get install chromium, or CHROMIUM=/path/to/chromium)" >&2; exit 1; fi
	NUWA_CHROMIUM="$(CHROMIUM)" $(PY) -m pytest tests/browser -q -p no:cacheprovider
	$(DONE)

## Regenerate the committed smoke golden notebooks and tables (after a deliberate change),
## from an empty artifact cache.
golden: venv
	rm -rf build/golden-artifacts
	NUWA_ARTIFACTS_DIR=build/golden-artifacts $(VENV)/bin/nuwa-repro --profile smoke

## Re-measure the reference runs that bound trained numbers in `make test` (after `make golden`,
## whenever trained numbers moved): the smoke pipeline from an empty cache under other kernels
## (SPREAD_KERNELS, name:VAR=value,...: the rounding of another CPU) and with other seeds
## (SPREAD_SEEDS), tables committed under results/smoke/spread/kernels-<name>/ and seed<N>/.
SPREAD_KERNELS ?= aten-avx2:ATEN_CPU_CAPABILITY=avx2 \
	avx2:ATEN_CPU_CAPABILITY=avx2,MKL_CBWR=AVX2,ONEDNN_MAX_CPU_ISA=AVX2 \
	mkl-compatible:MKL_CBWR=COMPATIBLE
SPREAD_SEEDS ?= 1 2 3 4
spread: spread-kernels spread-seeds

spread-kernels: venv
	rm -rf build/spread-kernels
	for k in $(SPREAD_KERNELS); do name=$${k%%:*}; \
		env $$(echo $${k#*:} | tr , ' ') NUWA_ARTIFACTS_DIR=build/spread-kernels/artifacts-$$name \
			$(VENV)/bin/nuwa-repro --profile smoke --out build/spread-kernels/$$name --no-progress || exit 1; \
	done
	rm -rf results/smoke/spread/kernels-*
	for k in $(SPREAD_KERNELS); do name=$${k%%:*}; mkdir -p results/smoke/spread/kernels-$$name; \
		cp build/spread-kernels/$$name/smoke/tables/* results/smoke/spread/kernels-$$name/; done

spread-seeds: venv
	rm -rf build/spread-seeds
	for s in $(SPREAD_SEEDS); do \
		NUWA_ARTIFACTS_DIR=build/spread-seeds/artifacts-$$s $(VENV)/bin/nuwa-repro --profile smoke \
			--seed $$s --out build/spread-seeds/seed$$s --no-progress || exit 1; \
	done
	rm -rf results/smoke/spread/seed*
	for s in $(SPREAD_SEEDS); do mkdir -p results/smoke/spread/seed$$s; \
		cp build/spread-seeds/seed$$s/smoke/tables/* results/smoke/spread/seed$$s/; done

## Browse and run the notebooks interactively: JupyterLab on the repository with the
## venv's kernel "Python (nuwa)", listening on 127.0.0.1 only, without a token.
lab: venv
	@echo "JupyterLab: http://127.0.0.1:$(LAB_PORT)/lab/tree/notebooks   (Ctrl-C stops it; results go to $(LAB_RESULTS)/)"
	NUWA_RESULTS_DIR="$(CURDIR)/$(LAB_RESULTS)" $(VENV)/bin/jupyter lab --no-browser \
		--ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.port_retries=0 \
		--ServerApp.root_dir="$(CURDIR)" --IdentityProvider.token='' \
		--MappingKernelManager.default_kernel_name=nuwa \
		$(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf build
