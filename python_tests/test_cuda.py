"""The CUDA kernels (csrc/cuda) against the CPU kernels and the float64 reference,
opcheck and gradcheck on the GPU. Skipped on machines without a CUDA device; run
on a GPU machine with `python -m pytest python_tests/test_cuda.py`."""
import numpy as np
import pytest
import torch

import a3ext  # noqa: F401
from a3ext import ops, reference as ref

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPES = [(1, 1, 1, 1), (2, 3, 4, 5), (5, 7, 11, 13), (64, 9, 33, 128)]


def _inputs(N, T, D, H, G, dtype, device, requires_grad=True):
    g = torch.Generator().manual_seed(N + 10 * T + 100 * D + 1000 * H)
    mk = lambda *s: (0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).to(dtype)  # noqa: E731
    cpu = dict(x=mk(N, T, D), h0=mk(N, H), Wx=mk(D, G * H), Wh=mk(H, G * H), b=mk(G * H))
    dev = {k: v.to(device).requires_grad_(requires_grad) for k, v in cpu.items()}
    return {k: v.requires_grad_(requires_grad) for k, v in cpu.items()}, dev


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cuda_matches_cpu_and_reference(cell, shape, dtype):
    N, T, D, H = shape
    G = 4 if cell == "lstm" else 1
    fn = ops.lstm if cell == "lstm" else ops.rnn
    cpu, dev = _inputs(N, T, D, H, G, dtype, "cuda")
    h_cpu, h_dev = fn(**cpu), fn(**dev)
    assert h_dev.device.type == "cuda"
    dh = torch.randn(N, T, H, dtype=torch.float64).to(dtype)
    h_cpu.backward(dh)
    h_dev.backward(dh.cuda())
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h_dev.cpu(), h_cpu, **tol)
    for k in cpu:
        torch.testing.assert_close(dev[k].grad.cpu(), cpu[k].grad, **tol)
    if dtype == torch.float64:
        args = [cpu[k].detach().numpy() for k in ("x", "h0", "Wx", "Wh", "b")]
        h_ref, _ = (ref.lstm_forward if cell == "lstm" else ref.rnn_forward)(*args)
        assert ref.rel_error(h_dev.detach().cpu().numpy(), h_ref) <= 1e-10


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (2, 64, 32, 32), (1, 512, 16, 16)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_gram_matches_cpu(shape, dtype):
    F = torch.randn(*shape, dtype=dtype)
    Fd = F.cuda().requires_grad_()
    Fc = F.clone().requires_grad_()
    G_dev, G_cpu = ops.gram(Fd), ops.gram(Fc)
    assert torch.equal(G_dev, G_dev.transpose(1, 2))
    dG = torch.randn(shape[0], shape[1], shape[1], dtype=dtype)  # not symmetric
    G_dev.backward(dG.cuda())
    G_cpu.backward(dG)
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(G_dev.cpu(), G_cpu, **tol)
    torch.testing.assert_close(Fd.grad.cpu(), Fc.grad, **tol)


def test_cuda_opcheck_and_gradcheck():
    _, r = _inputs(3, 4, 5, 6, 1, torch.float64, "cuda")
    _, l = _inputs(3, 4, 5, 6, 4, torch.float64, "cuda")
    c0 = torch.randn(3, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.a3ext.rnn_forward.default, (r["x"], r["h0"], r["Wx"], r["Wh"], r["b"]))
    torch.library.opcheck(torch.ops.a3ext.lstm_forward.default, (l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"]))
    F = torch.randn(2, 5, 3, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.a3ext.gram_forward.default, (F, True))
    assert torch.autograd.gradcheck(ops.rnn, tuple(r[k] for k in ("x", "h0", "Wx", "Wh", "b")))
    assert torch.autograd.gradcheck(ops.lstm, tuple(l[k] for k in ("x", "h0", "Wx", "Wh", "b")) + (c0,))
    assert torch.autograd.gradcheck(ops.gram, (F,))


def test_cuda_mixed_devices_is_a_clear_error():
    _, l = _inputs(3, 4, 5, 6, 4, torch.float32, "cuda", requires_grad=False)
    l["Wh"] = l["Wh"].cpu()
    with pytest.raises((ValueError, RuntimeError), match=r"Wh"):
        ops.lstm(**l)
