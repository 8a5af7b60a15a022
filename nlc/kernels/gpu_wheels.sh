#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before a device call: the wheels the GPU image lacks, into .whl/
# (git-ignored; name it in the device call's `carry`). The image has torch, triton, pytest, hypothesis,
# networkx, tqdm, einops and transformers; it lacks lark (the .nl front end) and fla (the benchmark's
# reference for the linear memory). Python there is 3.12.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
  lark==1.3.1 flash-linear-attention==0.6.0 fla-core==0.6.0
ls -la .whl
