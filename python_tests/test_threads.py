"""Idle OpenMP threads sleep in programs that import a3ext first (issue 14, section 3):
a3ext sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp, unless the user chose a
policy or torch was imported first. The measured busy-machine slowdowns are in
benchmarks/bench_busy.py and the README's Reliability section."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# The main thread does serial Python work between small parallel regions; the CPU time
# of the other threads (process CPU time - the main thread's) says whether the other
# OpenMP thread spins meanwhile (about as much CPU as the main thread) or sleeps (only
# its half of the parallel work). A ratio of CPU times, so it holds on a loaded machine.
_SPIN_PROBE = """
import json, os, sys, time
if sys.argv[1] == "torch-first":
    import torch
import a3ext, torch
torch.set_num_threads(2)
x = torch.randn(1 << 20)
def serial():
    s = 0
    for i in range(30000):
        s += i
for _ in range(5):
    x.add_(1.0); serial()
c0, m0 = time.process_time(), time.thread_time()
for _ in range(150):
    x.add_(1.0)  # a parallel region on both threads
    serial()
main = time.thread_time() - m0
print(json.dumps({"ratio": (time.process_time() - c0 - main) / main, "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(extra)
    return env


def _python(code: str, env: dict, *args) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", ["import a3ext", "import a3ext.cli", "import a3ext.captioning.solver"])
def test_importing_a3ext_first_makes_idle_threads_sleep(entry):
    code = f"{entry}\nimport os, json\nprint(json.dumps({{'policy': os.environ.get('OMP_WAIT_POLICY')}}))"
    assert _python(code, _clean_env())["policy"] == "PASSIVE"


def test_a_chosen_policy_or_torch_imported_first_is_left_alone():
    code = "import a3ext, os, json\nprint(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY')}))"
    assert _python(code, _clean_env(OMP_WAIT_POLICY="ACTIVE"))["policy"] == "ACTIVE"
    assert _python(code, _clean_env(GOMP_SPINCOUNT="10000"))["policy"] is None
    code = "import torch, a3ext, os, json\nprint(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY')}))"
    assert _python(code, _clean_env())["policy"] is None  # too late for libgomp: not pretended


# Runs `python -m a3ext --help` and records OMP_WAIT_POLICY at the moment torch's import
# begins (libgomp loads with torch and reads it then).
_CLI_PROBE = """
import importlib.abc, json, os, runpy, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "torch" not in seen:
            seen["torch"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Watch())
sys.argv = ["a3ext", "--help"]
try:
    runpy.run_module("a3ext", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps(seen))
"""


def test_the_cli_sets_the_policy_before_torch_loads():
    assert _python(_CLI_PROBE, _clean_env()) == {"torch": "PASSIVE"}


def test_idle_threads_do_not_spin_when_a3ext_came_first():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    passive = _python(_SPIN_PROBE, _clean_env(), "a3ext-first")
    assert passive["policy"] == "PASSIVE"
    assert passive["ratio"] < 0.4, passive  # the other thread sleeps between the parallel regions
    spin = _python(_SPIN_PROBE, _clean_env(), "torch-first")
    assert spin["policy"] is None and spin["ratio"] > 2 * passive["ratio"], (spin, passive)  # it spins


_PARALLEL_PROBE = """
import json, time, resource, torch, a3ext
from a3ext import ops
torch.set_num_threads(2)
# the 'own' Gram engine splits the pixels over the threads with at::parallel_for;
# the 'blas' engine of the Gram op does not use it, so compare the two threads' CPU
f = torch.randn(1, 64, 256, 256)
engine = "own" if "own" in ops.gemm_engines() else None
import os
names = ('libgomp', 'libomp', 'libiomp')
maps = [l.split()[-1] for l in open('/proc/self/maps') if any(n in os.path.basename(l.split()[-1]) for n in names)]
res = {"engine": engine, "gomp": sorted(set(maps))}
if engine:
    with ops.gemm_backend(engine):
        ops.gram(f)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(40):
            ops.gram(f)
        res["cpu_per_wall"] = (time.process_time() - c0) / (time.perf_counter() - t0)
print(json.dumps(res))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_kernels_parallel_loops_run_on_torchs_openmp_threads():
    """at::parallel_for runs serially in code compiled without -fopenmp: the build
    compiles the kernels with it and binds them to the OpenMP runtime torch loaded
    (one runtime in the process), and a parallel loop keeps two threads busy."""
    import a3ext._C

    if not torch_openmp():
        pytest.skip("this torch is not an OpenMP build")
    assert b"GOMP_parallel" in open(a3ext._C.__file__, "rb").read()
    out = subprocess.run([sys.executable, "-c", _PARALLEL_PROBE], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(res["gomp"]) == 1, res["gomp"]  # one OpenMP runtime: the one torch loaded
    if res["engine"] is None:
        pytest.skip("no 'own' engine on this CPU (needs AVX-512) to observe a parallel loop")
    # two threads working: process CPU time well above wall time (1.0 = one thread);
    # on a loaded machine the ratio drops, so only fewer than 1.3 fails
    assert res["cpu_per_wall"] > 1.3, res


def torch_openmp() -> bool:
    import torch

    return torch.backends.openmp.is_available()
