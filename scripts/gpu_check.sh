#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (README, "CUDA"). GPU time is
# scarce (one or two runs), so one run brings back every failure, every log and
# every number: no step stops the ones after it (a failed build skips only what
# needs the build), each step runs under `timeout` within one overall budget, and
# everything lands under $OUT, at most 8 files (the device tool's limit):
#
#   summary.txt               preflight, each step's status and time, test counts, failures
#   build.log                 the full pip / CMake / nvcc / ninja log and the import check
#   tests.log                 every CUDA test, each one reported (-rA), full tracebacks
#   captioning.log            a CaptioningRNN trained and decoded on CUDA
#   bench_rnn_cuda.txt, .json bench_rnn --device cuda (a3ext vs cuDNN in IEEE and TF32, composite)
#   bench_gram_cuda.txt, .json bench_gram --device cuda (SYRK + mirror vs bmm)
#
# With the device tool (its machine: python3 with torch 2.11+cu130, nvcc 13.0,
# CMake, ninja, scikit-build-core and pytest; offline):
#   run(command="bash scripts/gpu_check.sh", timeout_s=600)
# A Python package the machine lacks travels as wheels in .whl/ (device README):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=600)
# Elsewhere: OUT=gpu_results bash scripts/gpu_check.sh   (PYTHON=... picks the interpreter)
# A3EXT_GPU_BUDGET_S (default 500) bounds all steps together.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
START=$(date +%s)
BUDGET=${A3EXT_GPU_BUDGET_S:-500}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}  # the H200 (sm_90)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILED=()
say() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME CAP_S LOG CMD...: CMD under `timeout` (CAP_S or what is left of the
# budget, the smaller), its output appended to LOG; the outcome goes to the summary.
step() {
  local name=$1 cap=$2 log=$3
  shift 3
  local left=$((BUDGET - ($(date +%s) - START)))
  local limit=$((cap < left ? cap : left))
  if ((limit < 15)); then
    say "SKIP  $name: the ${BUDGET}s budget is used up"
    FAILED+=("$name (no time left)")
    return 1
  fi
  local t0
  t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*" >>"$log"
  timeout --kill-after=15 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local dt=$(($(date +%s) - t0))
  if ((rc == 0)); then
    say "OK    $name (${dt}s)"
  elif ((rc == 124 || rc == 137)); then
    say "TIME  $name: stopped at its ${limit}s limit, see $(basename "$log")"
    FAILED+=("$name (timeout)")
  else
    say "FAIL  $name: exit $rc after ${dt}s, see $(basename "$log")"
    FAILED+=("$name")
  fi
  return $rc
}

# ---- wheels carried in .whl/ (for a package the offline machine lacks) --------
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/a3ext-site .whl/*.whl \
    && export PYTHONPATH=/tmp/a3ext-site${PYTHONPATH:+:$PYTHONPATH}
  say "carried wheels: $(cd .whl && ls *.whl | tr '\n' ' ')"
fi

# ---- preflight (seconds): what the build and the tests need ------------------
{
  echo "# a3ext gpu_check  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -srm)  $(nproc) CPUs"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  else
    echo "gpu: nvidia-smi not found"
  fi
  echo "nvcc: $(command -v nvcc || echo none) $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*')"
  echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST CMAKE_BUILD_PARALLEL_LEVEL=$CMAKE_BUILD_PARALLEL_LEVEL"
} | tee -a "$SUMMARY"
"$PY" - <<'PY' 2>&1 | tee -a "$SUMMARY"
import importlib, re, shutil, subprocess, sys

fatal, notes = [], []
print(f"python: {sys.executable} {sys.version.split()[0]}")
try:
    import torch
    print(f"torch: {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}); "
          f"GPUs visible: {torch.cuda.device_count()}"
          + "".join(f"; cuda:{i} {torch.cuda.get_device_name(i)} sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}"
                    for i in range(torch.cuda.device_count())))
    if torch.version.cuda is None:
        fatal.append("torch is not a CUDA build")
    elif not torch.cuda.is_available():
        notes.append("no usable CUDA device: the CUDA tests will skip and the benchmarks fail")
except Exception as e:  # noqa: BLE001
    fatal.append(f"import torch: {e}")


def version(mod):
    try:
        m = importlib.import_module(mod)
    except Exception:  # noqa: BLE001
        return None
    return getattr(m, "__version__", "?")


def tool(name, module):
    """Version of a build tool: its Python package's copy first (as scikit-build-core looks), else the PATH."""
    for cmd in ([sys.executable, "-m", module, "--version"], [shutil.which(name) or name, "--version"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
        except Exception:  # noqa: BLE001
            continue
        m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
        if m:
            return tuple(int(g or 0) for g in m.groups()), " ".join(cmd[:-1])
    return None, None


for mod, need in (("scikit_build_core", "0.10"), ("pytest", None)):
    v = version(mod)
    print(f"{mod}: {v or 'MISSING'}")
    if v is None:
        fatal.append(f"{mod} is missing (carry its wheel in .whl/)")
cm, where = tool("cmake", "cmake")
print(f"cmake: {'.'.join(map(str, cm)) + ' (' + where + ')' if cm else 'MISSING'}")
if cm is None or cm < (3, 25, 0):
    fatal.append("cmake >= 3.25 is needed")
nj, where = tool("ninja", "ninja")
print(f"ninja: {'.'.join(map(str, nj)) + ' (' + where + ')' if nj else 'MISSING'}")
if nj is None:
    fatal.append("ninja is missing")
if shutil.which("nvcc") is None:
    fatal.append("nvcc is not on the PATH")
for mod in ("numpy", "h5py", "PIL", "tqdm", "matplotlib", "pytest_timeout"):
    v = version(mod)
    print(f"{mod}: {v or 'MISSING'}")
    if v is None and mod != "pytest_timeout":
        notes.append(f"{mod} is missing: tests that import it fail")
for n in notes:
    print(f"NOTE: {n}")
for f in fatal:
    print(f"PREFLIGHT FAILED: {f}")
sys.exit(1 if fatal else 0)
PY
PREFLIGHT=${PIPESTATUS[0]}
if ((PREFLIGHT != 0)); then
  FAILED+=("preflight")
fi
PYTEST_TIMEOUT=()
"$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST_TIMEOUT=(--timeout=150)

# ---- build: the editable install against this machine's torch ----------------
BUILT=0
if ((PREFLIGHT == 0)) && step build 300 "$OUT/build.log" \
  "$PY" -m pip install --no-index --no-build-isolation --no-deps --no-cache-dir -v -e . \
  --config-settings=cmake.define.A3EXT_CUDA=ON --config-settings=build-dir=build/gpu-check \
  --config-settings=build.verbose=true; then
  step import 60 "$OUT/build.log" env LD_BIND_NOW=1 "$PY" -c '
import torch, a3ext
names = ("rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gram_forward", "gram_backward")
missing = [n for n in names if not torch._C._dispatch_has_kernel_for_dispatch_key(
    getattr(torch.ops.a3ext, n).default.name(), "CUDA")]
assert not missing, f"no CUDA kernel for {missing}"
print(f"a3ext imports (all symbols bound) with torch {torch.__version__}; CUDA kernels registered for {len(names)} ops")
' && BUILT=1
fi
if ((BUILT == 0)); then
  say "SKIP  tests, captioning, benchmarks: no working build (see build.log / the preflight above)"
  FAILED+=("tests, captioning, benchmarks (no build)")
else
  # ---- every CUDA test, each reported; no -x ---------------------------------
  step tests 240 "$OUT/tests.log" "$PY" -m pytest python_tests/test_cuda.py -k "not captioning" \
    -v -rA --tb=long -p no:cacheprovider -o faulthandler_timeout=120 "${PYTEST_TIMEOUT[@]}"
  # ---- a captioning model trained and decoded on CUDA ------------------------
  step captioning 150 "$OUT/captioning.log" "$PY" -m pytest python_tests/test_cuda.py -k captioning \
    -v -rA --tb=long -p no:cacheprovider -o faulthandler_timeout=120 "${PYTEST_TIMEOUT[@]}"
  # ---- benchmarks: tables to .txt, rows to .json -----------------------------
  step bench_rnn 200 "$OUT/bench_rnn_cuda.txt" "$PY" benchmarks/bench_rnn.py --device cuda \
    --cell lstm,rnn --dtype float32,float64 --json "$OUT/bench_rnn_cuda.json"
  step bench_gram 100 "$OUT/bench_gram_cuda.txt" "$PY" benchmarks/bench_gram.py --device cuda \
    --json "$OUT/bench_gram_cuda.json"
fi

# ---- the summary: test counts, failing tests, the tables ---------------------
for log in "$OUT/tests.log" "$OUT/captioning.log"; do
  [ -f "$log" ] || continue
  say "$(basename "$log"): $(grep -E '^=+ .*(passed|failed|error|skipped|deselected).* in [0-9.]+s' "$log" | tail -1)"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/  /' | tee -a "$SUMMARY"
done
for t in "$OUT/bench_rnn_cuda.txt" "$OUT/bench_gram_cuda.txt"; do
  [ -f "$t" ] && { echo; sed -n '/^ *cell \|^ *dtype /,$p' "$t"; }
done
say ""
say "total $(($(date +%s) - START))s; $( ((${#FAILED[@]} == 0)) && echo "everything passed" || echo "FAILED: ${FAILED[*]}")"
((${#FAILED[@]} == 0))
