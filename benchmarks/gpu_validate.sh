#!/usr/bin/env bash
# Validate and time the GPU paths on a lent GPU machine (see benchmarks/RESULTS.md).
# Usage (on the GPU machine, repo root): OUT=/tmp/out bash benchmarks/gpu_validate.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/pirender-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
if ! $PY -c "import av" 2>/dev/null; then $PY -m pip install -q --no-deps --no-index .carry/av-*.whl; fi
$PY -m pip install -q --no-deps --no-build-isolation -e . || exit 1
# the fused warp needs CuPy, carried in parts (see benchmarks/gpu_carry.sh): join them and install
if ! $PY -c "import cupy" 2>/dev/null && ls .carry/cupy-part-* >/dev/null 2>&1; then
    wheel=".carry/$(cat .carry/cupy-wheel-name 2>/dev/null || echo cupy_cuda13x-14.2.0-cp312-cp312-manylinux2014_x86_64.whl)"
    cat .carry/cupy-part-* > "$wheel"
    $PY -m pip install -q --no-deps --no-index "$wheel" .carry/fastrlock*.whl
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -s -m gpu -rA tests 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "cuda |passed|failed|PASSED|FAILED|SKIPPED"
$PY -m pytest -q -x -p no:cacheprovider tests 2>&1 | tail -3 | tee "$OUT/all_tests.log"
$PY -m pirender.engine.cli.main doctor | tee "$OUT/doctor.txt"
$PY -m pirender.engine.cli.main bench --device cuda --backend all --precisions fp32,tf32,fp16,bf16 --batch 1,8 --warmup 10 \
    --repeats 100 --warp-kernel --streams "compiled fp16" --markdown --json "$OUT/bench_cuda.json" \
    --plot "$OUT/bench_cuda.png" 2>&1 | tee "$OUT/bench_cuda.txt"
# the neural renderer's editing network through every runtime (issue 14)
$PY benchmarks/bench_neural.py --device cuda --runtimes torch,compiled,onnx,tensorrt --precision fp16 \
    --json "$OUT/bench_neural_cuda.json" 2>&1 | tee "$OUT/bench_neural_cuda.txt"
