#!/usr/bin/env bash
# Compile check of the CUDA kernels on a machine without a GPU: builds a3ext
# against a CUDA build of torch (from PyPI, in its own virtual environment) with
# the system nvcc, then imports it with every symbol bound (LD_BIND_NOW=1), which
# fails on any compile, link or undefined-symbol error, and checks that every
# CUDA kernel is registered and that the build put no NVIDIA wheel include folder
# (which holds CUDA runtime headers of its own minor version) ahead of nvcc's.
# It cannot run the kernels (no driver); that happens on a lent GPU machine
# (scripts/gpu_check.sh).
#
#   bash scripts/check_cuda_build.sh                           # torch 2.14.1 (cu130)
#   A3EXT_CUDA_TORCH=2.11.0 bash scripts/check_cuda_build.sh   # the GPU machine's torch
#   A3EXT_CUDA_VENV=DIR ...                                    # default /tmp/a3ext-cuda-venv-$A3EXT_CUDA_TORCH
#
# Not part of .ci/run (a CUDA torch is ~5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${A3EXT_CUDA_TORCH:-2.14.1}
VENV=${A3EXT_CUDA_VENV:-/tmp/a3ext-cuda-venv-$TORCH_VERSION}
BUILD_DIR=build/cuda-check-$TORCH_VERSION
command -v nvcc >/dev/null || { echo "check_cuda_build: nvcc not found on PATH" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" \
  "scikit-build-core>=0.10" ninja numpy
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# a build directory of its own, so the CPU build next to it is untouched
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --config-settings=build-dir="$BUILD_DIR" --config-settings=cmake.define.A3EXT_CUDA=ON \
  --config-settings=build.verbose=false .
# nvcc's own CUDA runtime headers must win: no wheel include folder on the command lines
if grep -q "nvidia/cu13/include\|nvidia/cuda_runtime/include" "$BUILD_DIR/build.ninja"; then
  echo "check_cuda_build: FAIL: an NVIDIA wheel include folder is on the compile command line:" >&2
  grep -o "[^ ]*nvidia/[a-z_0-9]*/include" "$BUILD_DIR/build.ninja" | sort -u >&2
  exit 1
fi
cd /tmp  # import the installed copy, not the source tree
LD_BIND_NOW=1 "$VENV/bin/python" - <<'PY'
import torch, a3ext
ops = torch.ops.a3ext
for name in ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gram_forward", "gram_backward"):
    op = getattr(ops, name).default
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA"), f"no CUDA kernel for {name}"
print(f"check_cuda_build: OK: a3ext built against torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"CUDA kernels registered for rnn, lstm and gram; all symbols resolve")
PY
