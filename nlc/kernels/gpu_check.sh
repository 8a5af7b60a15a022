#!/usr/bin/env bash
# Run THERE, on the CUDA machine, from the repo root (one device call, well under 10 minutes):
#   here:  bash nlc/kernels/gpu_wheels.sh
#   device run: command "bash nlc/kernels/gpu_check.sh", carry [".whl"], timeout_s 540
# 1. the kernel tests on the GPU (-m gpu: forward + backward at T = 2048; -m slow: the interpreter-sized
#    cases, here compiled for the GPU), 2. the benchmark table (nlc bench kernels). Logs go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/nlc-gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } | tee "$OUT/env.txt"
timeout 240 python3 -m pytest tests/kernels -m "gpu or slow" -q -p no:cacheprovider -x 2>&1 | tee "$OUT/tests.txt"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then echo "GPU kernel tests failed (rc $rc); no timings"; exit "$rc"; fi
timeout 420 python3 -m nlc.kernels.bench "$@" 2>&1 | tee "$OUT/bench.txt"
