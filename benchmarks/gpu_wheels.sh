#!/usr/bin/env bash
# Prepare the pure-Python wheels a GPU machine without internet lacks for benchmarks/gpu_check.py
# (it has torch, torchvision, numpy, OpenCV, PyYAML, portalocker and tqdm): Meta's sam2 code
# (rf-sam-2), hydra-core, omegaconf, antlr4-python3-runtime and iopath, into .whl/ (git-ignored
# through .git/info/exclude). Run it here, from the repository root, on a machine with the
# package index; then carry .whl/ to the GPU machine (docs/precision-and-gpu.md, "The GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
PY=${PYTHON:-python3}
# wheels published on PyPI
$PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d .whl rf-sam-2==1.0.3 hydra-core==1.3.2 omegaconf==2.3.0
# published as source only (pure Python): built into wheels here
$PY -m pip wheel --quiet --no-deps -w .whl antlr4-python3-runtime==4.9.3 iopath==0.1.10
ls .whl
