"""a3ext.ops.gram (C++ custom op) against the plain formula, opcheck, gradcheck, bad inputs."""
import numpy as np
import pytest
import torch

import a3ext  # noqa: F401
from a3ext import ops

# (N, C, H, W): tiny, odd, and shapes that take the block-triangle path (C >= 64, H*W >= 1024)
SHAPES = [(1, 1, 1, 1), (2, 3, 4, 5), (1, 7, 1, 13), (3, 16, 8, 8), (1, 64, 32, 32), (2, 100, 40, 30), (1, 130, 33, 33)]


def gram_reference(F: np.ndarray, normalize: bool = True) -> np.ndarray:
    """The plain formula in float64 numpy."""
    N, C, H, W = F.shape
    f = F.reshape(N, C, H * W).astype(np.float64)
    G = f @ f.transpose(0, 2, 1)
    return G / (C * H * W) if normalize else G



@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_gram_forward_and_backward_match_reference(shape, dtype, normalize, backend):
    F = torch.randn(*shape, dtype=torch.float64).to(dtype).requires_grad_()
    G = ops.gram(F, normalize)
    want = gram_reference(F.detach().double().numpy(), normalize)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = max(1e-30, np.abs(want).max())
    assert G.shape == (shape[0], shape[1], shape[1]) and G.dtype == dtype
    assert np.abs(G.detach().double().numpy() - want).max() / scale <= tol
    assert torch.equal(G, G.transpose(1, 2))  # exactly symmetric (mirrored)
    # a NON-symmetric upstream gradient: dF = s (dG + dG^T) F
    dG = torch.randn(shape[0], shape[1], shape[1], dtype=torch.float64)
    G.backward(dG.to(dtype))
    N, C, H, W = shape
    s = 1.0 / (C * H * W) if normalize else 1.0
    f = F.detach().double().numpy().reshape(N, C, H * W)
    dGn = dG.numpy()
    want_dF = (s * (dGn + dGn.transpose(0, 2, 1)) @ f).reshape(shape)
    assert np.abs(F.grad.double().numpy() - want_dF).max() / max(1e-30, np.abs(want_dF).max()) <= tol * 10


def test_gram_equals_autograd_of_the_bmm_formula():
    F = torch.randn(2, 70, 32, 40, dtype=torch.float64, requires_grad=True)
    F2 = F.detach().clone().requires_grad_()
    dG = torch.randn(2, 70, 70, dtype=torch.float64)
    ops.gram(F).backward(dG)
    f = F2.reshape(2, 70, -1)
    (torch.bmm(f, f.transpose(1, 2)) / (70 * 32 * 40)).backward(dG)
    torch.testing.assert_close(F.grad, F2.grad, rtol=1e-12, atol=1e-14)


def test_gram_noncontiguous_input():
    F = torch.randn(2, 64, 40, 40, dtype=torch.float64).to(memory_format=torch.channels_last)
    assert not F.is_contiguous()
    np.testing.assert_allclose(ops.gram(F).numpy(), gram_reference(F.numpy()), rtol=1e-12, atol=1e-15)


def test_gram_empty_and_degenerate():
    assert ops.gram(torch.zeros(0, 3, 4, 4)).shape == (0, 3, 3)
    G = ops.gram(torch.zeros(2, 3, 0, 4))
    assert G.shape == (2, 3, 3) and torch.count_nonzero(G) == 0
    F = torch.randn(2, 3, 0, 4, requires_grad=True)
    ops.gram(F).sum().backward()
    assert F.grad.shape == F.shape


@pytest.mark.parametrize("requires_grad", [False, True])
def test_gram_opcheck(requires_grad):
    F = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.a3ext.gram_forward.default, (F, True))
    torch.library.opcheck(torch.ops.a3ext.gram_forward.default, (F.float().detach().requires_grad_(requires_grad), False))
    big = torch.randn(1, 64, 32, 32, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.a3ext.gram_forward.default, (big, True))
    torch.library.opcheck(torch.ops.a3ext.gram_backward.default, (torch.randn(2, 5, 5, dtype=torch.float64), F.detach(), True))


def test_gram_gradcheck():
    F = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.gram, (F,))
    assert torch.autograd.gradcheck(lambda f: ops.gram(f, False), (F,))


def test_gram_torch_compile():
    F = torch.randn(1, 8, 6, 6, requires_grad=True)
    fn = torch.compile(lambda f: (ops.gram(f) ** 2).sum(), fullgraph=True)
    loss = fn(F)
    (g,) = torch.autograd.grad(loss, F)
    F2 = F.detach().clone().requires_grad_()
    (ops.gram(F2) ** 2).sum().backward()
    torch.testing.assert_close(g, F2.grad)


@pytest.mark.parametrize("bad,exc,pattern", [
    (torch.zeros(3, 4, 5), ValueError, r"a3ext.gram: expected features of shape \(N, C, H, W\), but got a 3-D tensor of shape \[3, 4, 5\]"),
    (torch.zeros(1, 2, 3, 4, dtype=torch.int64), TypeError, r"features must be torch.float32 or torch.float64, but got torch.int64"),
    (torch.zeros(1, 2, 3, 4, dtype=torch.float16), TypeError, r"features must be torch.float32 or torch.float64, but got torch.float16"),
])
def test_gram_bad_inputs(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ops.gram(bad)
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode() as mode:
        with pytest.raises(exc, match=pattern):
            ops.gram(mode.from_tensor(bad))


def test_gram_backward_bad_inputs():
    F = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"a3ext.gram_backward: expected grad of shape \(N, C, C\) = \[2, 5, 5\], but got \[2, 5, 4\]"):
        torch.ops.a3ext.gram_backward(torch.zeros(2, 5, 4, dtype=torch.float64), F, True)
    with pytest.raises(TypeError, match=r"same dtype, but grad is torch.float32 while features is torch.float64"):
        torch.ops.a3ext.gram_backward(torch.zeros(2, 5, 5), F, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 17, 1, 15), (1, 17, 40, 25), (2, 70, 33, 33), (1, 48, 64, 64)])
def test_gram_own_kernel_split_over_two_threads(shape, dtype):
    """The own engine with its pixels split over two threads (each summing into its
    own buffer): channels not a multiple of 16, pixels not a multiple of a panel,
    fewer pixels than one panel."""
    if "own" not in ops.gemm_engines():
        pytest.skip("no 'own' engine on this CPU (needs AVX-512)")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        F = torch.randn(*shape, dtype=dtype)
        with ops.gemm_backend("own"):
            G = ops.gram(F)
        assert torch.equal(G, G.transpose(1, 2))
        want = gram_reference(F.double().numpy())
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert np.abs(G.double().numpy() - want).max() / np.abs(want).max() <= tol
    finally:
        torch.set_num_threads(previous)


def test_without_avx512_the_own_engine_is_absent_and_forcing_it_falls_back(run_python):
    """On a CPU without AVX-512 (simulated with ATEN_CPU_CAPABILITY=avx2) the own
    kernel is not offered, and forcing it runs the blas engine: same values."""
    code = ("import numpy as np, torch, a3ext; from a3ext import ops\n"
            "assert ops.cpu_isa() in ('AVX2', 'DEFAULT'), ops.cpu_isa()\n"
            "assert 'own' not in ops.gemm_engines(), ops.gemm_engines()\n"
            "F = torch.randn(1, 70, 33, 33)\n"
            "with ops.gemm_backend('own'):\n"
            "    G = ops.gram(F)\n"
            "f = F.double().reshape(70, -1).numpy()\n"
            "want = f @ f.T / F.numel()\n"
            "assert np.abs(G[0].double().numpy() - want).max() / np.abs(want).max() < 1e-5\n"
            "print('ok')\n")
    out = run_python(code, ATEN_CPU_CAPABILITY="avx2")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_vectorized_mirror_and_symmetric_part_equal_the_plain_code_bit_for_bit(tmp_path, run_python):
    """With AVX-512 the forward's mirror and the backward's (dG + dG^T) * s run on
    register transposes (gram_tiles.cpp); without it (ATEN_CPU_CAPABILITY=avx2) on
    plain loops and ATen's add and mul. Same engine (blas; oneDNN, whose scaled
    mirror also runs there, for float32), same inputs, random and expanded upstream
    gradients, two threads: the same bits, for channel counts with and without a
    partial 16- or 8-wide block."""
    if ops.cpu_isa() != "AVX512":
        pytest.skip("needs an AVX-512 CPU for the vectorized side")
    code = ("import sys, torch, a3ext; from a3ext import ops\n"
            "torch.set_num_threads(2)\n"
            "torch.manual_seed(0)\n"
            "out = {}\n"
            "for dtype in (torch.float32, torch.float64):\n"
            "    engines = ['blas'] + (['onednn'] if dtype == torch.float32 and 'onednn' in ops.gemm_engines() else [])\n"
            "    for C in (5, 16, 37, 48, 130, 200):\n"
            "        F = torch.randn(3, C, 7, 9, dtype=dtype, requires_grad=True)\n"
            "        for grad in ('random', 'expanded'):\n"
            "            dG = torch.randn(3, C, C, dtype=dtype) if grad == 'random' else torch.ones(1, 1, 1, dtype=dtype).expand(3, C, C)\n"
            "            for engine in engines:\n"
            "                with ops.gemm_backend(engine):\n"
            "                    G = ops.gram(F)\n"
            "                    dF, = torch.autograd.grad(G, F, dG)\n"
            "                out[f'{dtype} {C} {grad} {engine}'] = (G.detach(), dF)\n"
            "torch.save(out, sys.argv[1])\n"
            "print(ops.cpu_isa())\n")
    results = {}
    for cap in ("avx512", "avx2"):
        path = tmp_path / f"{cap}.pt"
        run = run_python(code, str(path), ATEN_CPU_CAPABILITY=cap)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.split()[-1] == cap.upper(), run.stdout
        results[cap] = torch.load(path, weights_only=True)
    assert results["avx512"].keys() == results["avx2"].keys()
    for key, (G, dF) in results["avx512"].items():
        G2, dF2 = results["avx2"][key]
        assert torch.equal(G, G2), key
        assert torch.equal(dF, dF2), key
        assert torch.equal(G, G.transpose(1, 2)), key


def test_gram_backward_engine_is_measured_and_recorded():
    """The backward's product (bmm or oneDNN) is chosen by measurement per shape
    class, like the forward's engine, and every candidate gives the same dF to
    rounding."""
    F = torch.randn(2, 24, 9, 11, requires_grad=True)
    dG = torch.randn(2, 24, 24)
    with ops.gemm_backend("auto"):
        dF, = torch.autograd.grad(ops.gram(F), F, dG)
    choices = {k: v for k, v in ops.gemm_engine_choices().items() if k.startswith("gram_bwd Float C24 ")}
    candidates = ["blas"] + (["onednn"] if "onednn" in ops.gemm_engines() else [])
    if len(candidates) == 1:  # nothing to choose, nothing measured
        assert not choices, choices
    else:
        assert len(choices) == 1, ops.gemm_engine_choices()
        choice = next(iter(choices.values()))
        assert choice["engine"] in candidates and set(choice["trial_ms"]) == set(candidates), choice
    for engine in candidates:
        with ops.gemm_backend(engine):
            dF_e, = torch.autograd.grad(ops.gram(F), F, dG)
        torch.testing.assert_close(dF_e, dF, rtol=1e-5, atol=1e-7)

