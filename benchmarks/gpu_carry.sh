#!/usr/bin/env bash
# Prepare the wheels a lent GPU machine needs but cannot download (it reaches no registry):
# PyAV (the tests' video I/O) and CuPy + fastrlock (the fused warp kernel), for its Python 3.12.
# A device call carries at most 64 MiB, and the CuPy wheel alone is ~69 MB, so it is split into
# 25 MB parts; carry them over two calls (files a call does not name stay on the warm machine):
#   call 1: carry [".carry/av-<ver>-cp312-abi3-manylinux_2_28_x86_64.whl", ".carry/cupy-part-00"]
#   call 2: carry [".carry/cupy-part-01", ".carry/cupy-part-02", ".carry/fastrlock-<ver>.whl"],
#           command: OUT=$OUT bash benchmarks/gpu_validate.sh   (it joins the parts and installs)
# Usage (on this machine, repo root): bash benchmarks/gpu_carry.sh
set -euo pipefail
PIP=${PIP:-.venv/bin/pip}
mkdir -p .carry
common=(--python-version 3.12 --only-binary=:all: --no-deps --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .carry)
ls .carry/av-*.whl >/dev/null 2>&1 || "$PIP" download "av==19.0.2" "${common[@]}"
"$PIP" download "cupy-cuda13x==14.2.0" "fastrlock" "${common[@]}"
cupy=$(ls .carry/cupy_cuda13x-*.whl)
split -b 25M -d "$cupy" .carry/cupy-part-
echo "$(basename "$cupy")" > .carry/cupy-wheel-name
rm "$cupy"
ls -la .carry
