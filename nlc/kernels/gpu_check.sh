#!/usr/bin/env bash
# On a CUDA machine, from the repo root: GPU kernel tests, then the benchmark table.
set -euo pipefail
python -m pytest tests/kernels -m "gpu" -q
python -m pytest tests/kernels -m "slow" -q
python -m nlc.kernels.bench "$@"
