import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state (reproducible failures)."""
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture(params=["auto", "blas", "onednn", "mkl", "blas_batch", "own"])
def backend(request):
    """Every correctness test that takes it runs under each GEMM engine of the CPU
    kernels (an engine this torch build lacks is skipped)."""
    from a3ext import ops

    if request.param != "auto" and request.param not in ops.gemm_engines():
        pytest.skip(f"this torch has no {request.param} engine")
    with ops.gemm_backend(request.param):
        yield request.param


@pytest.fixture
def run_python():
    """run_python(code, *args, **env): ``python -c code args...`` in a fresh interpreter
    with these variables added to the environment (5 minutes at most); returns the
    CompletedProcess with text stdout and stderr. For what one process cannot undo:
    ATen's CPU capability, a library hidden at import."""
    import os
    import subprocess
    import sys

    def run(code: str, *args: str, **env: str):
        return subprocess.run([sys.executable, "-c", code, *args], env=dict(os.environ, **env),
                              capture_output=True, text=True, timeout=300)
    return run

