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
