#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (see README, "CUDA"): build
# against the machine's own torch, run the CUDA tests and the CUDA benchmarks,
# and leave everything under $OUT (or ./gpu_results).
#   bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  time python3 -m pip install --no-build-isolation --no-deps --config-settings=cmake.define.A3EXT_CUDA=ON -e . 2>&1 | tail -5
} 2>&1 | tee "$OUT/build.log"
python3 -m pytest python_tests/test_cuda.py python_tests/test_ops.py python_tests/test_gram.py -q -x 2>&1 | tee "$OUT/tests.log" | tail -5
python3 benchmarks/bench_rnn.py --device cuda --cell lstm,rnn --dtype float32 \
  --configs 128x16x512x512,512x32x1024x1024,50x16x256x512 --json "$OUT/bench_rnn_cuda.json" 2>&1 | tee "$OUT/bench_rnn_cuda.txt" | tail -20
python3 benchmarks/bench_gram.py --device cuda --json "$OUT/bench_gram_cuda.json" 2>&1 | tee "$OUT/bench_gram_cuda.txt" | tail -25
