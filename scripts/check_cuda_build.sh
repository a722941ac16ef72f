#!/usr/bin/env bash
# Compile check of the CUDA kernels on a machine without a GPU: builds a3ext
# against a CUDA build of torch (torch 2.14.1 + CUDA 13.0 in its own virtual
# environment) with the system nvcc, then imports it with every symbol bound
# (LD_BIND_NOW=1), which fails on any compile, link or undefined-symbol error.
# It cannot run the kernels (no driver); that happens on a lent GPU machine.
#
#   bash scripts/check_cuda_build.sh            # venv in /tmp/a3ext-cuda-venv
#   A3EXT_CUDA_VENV=DIR bash scripts/check_cuda_build.sh
#
# Not part of .ci/run (the CUDA torch is ~5.4 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${A3EXT_CUDA_VENV:-/tmp/a3ext-cuda-venv}
command -v nvcc >/dev/null || { echo "check_cuda_build: nvcc not found on PATH" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.14.1 "scikit-build-core>=0.10" ninja numpy
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# a build directory of its own, so the CPU build next to it is untouched
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
  --config-settings=build-dir=build/cuda-check --config-settings=cmake.define.A3EXT_CUDA=ON \
  --config-settings=build.verbose=false .
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
