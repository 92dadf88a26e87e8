#!/usr/bin/env bash
# The one prepared GPU run (benchmarks/gpu_run.py): run from anywhere, with the machine's own
# PyTorch and Triton (nothing is installed). Examples:
#   benchmarks/gpu_run.sh --out "$OUT"          # on a CUDA machine, at most 8 minutes
#   benchmarks/gpu_run.sh --dry-run --out /tmp/x # on a CPU: every part, tiny shapes
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_run.py "$@"
