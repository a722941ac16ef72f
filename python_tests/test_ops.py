"""a3ext.ops (C++ custom ops) against the float64 numpy reference, opcheck, gradcheck,
torch.compile and bad inputs."""
import sys

import numpy as np
import pytest
import torch

import a3ext
from a3ext import ops, reference as ref

# (N, T, D, H): tiny, odd, D != H, and big enough to take the multi-thread path.
SHAPES = [
    (1, 1, 1, 1),
    (2, 3, 4, 5),
    (3, 1, 7, 2),
    (1, 5, 3, 3),
    (4, 6, 5, 1),
    (5, 7, 11, 13),
    (16, 4, 33, 64),
    (64, 3, 8, 40),
]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def rel_error(a, b, dtype=torch.float64):
    """float64: the assignment's relative error (elementwise max). float32: the error
    relative to the largest magnitude of the reference, since elementwise relative
    error is meaningless for float32 entries that cancel to near zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if dtype == torch.float32:
        return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(b)))) if b.size else 0.0
    return ref.rel_error(a, b)


def make_inputs(N, T, D, H, gates, dtype, requires_grad=False, scale=0.5):
    g = torch.Generator().manual_seed(N * 1000 + T * 100 + D * 10 + H)
    def r(*s):
        return (scale * torch.randn(*s, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(requires_grad)
    return dict(x=r(N, T, D), h0=r(N, H), Wx=r(D, gates * H), Wh=r(H, gates * H), b=r(gates * H))


def np64(t):
    return t.detach().to(torch.float64).numpy()



@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_matches_reference(shape, dtype, backend):
    N, T, D, H = shape
    a = make_inputs(N, T, D, H, 1, dtype, requires_grad=True)
    h = ops.rnn(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    h_ref, cache = ref.rnn_forward(*(np64(a[k]) for k in ("x", "h0", "Wx", "Wh", "b")))
    assert h.dtype == dtype and h.shape == (N, T, H)
    assert rel_error(np64(h), h_ref, dtype) <= TOL[dtype]
    dh = torch.randn(N, T, H, dtype=torch.float64).to(dtype)
    h.backward(dh)
    grads_ref = ref.rnn_backward(np64(dh), cache)
    for name, g_ref in zip(("x", "h0", "Wx", "Wh", "b"), grads_ref):
        assert rel_error(np64(a[name].grad), g_ref, dtype) <= TOL[dtype], name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_matches_reference(shape, dtype, backend):
    N, T, D, H = shape
    a = make_inputs(N, T, D, H, 4, dtype, requires_grad=True)
    c0 = (0.5 * torch.randn(N, H, dtype=torch.float64)).to(dtype).requires_grad_()
    h = ops.lstm(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"], c0=c0)
    h_ref, cache = ref.lstm_forward_c0(
        np64(a["x"]), np64(a["h0"]), np64(c0), np64(a["Wx"]), np64(a["Wh"]), np64(a["b"]))
    assert h.dtype == dtype and h.shape == (N, T, H)
    assert rel_error(np64(h), h_ref, dtype) <= TOL[dtype]
    dh = torch.randn(N, T, H, dtype=torch.float64).to(dtype)
    h.backward(dh)
    dx, dh0, dc0, dWx, dWh, db = ref.lstm_backward_full(np64(dh), cache)
    got = dict(x=a["x"].grad, h0=a["h0"].grad, c0=c0.grad, Wx=a["Wx"].grad, Wh=a["Wh"].grad, b=a["b"].grad)
    for name, g_ref in zip(("x", "h0", "c0", "Wx", "Wh", "b"), (dx, dh0, dc0, dWx, dWh, db)):
        assert rel_error(np64(got[name]), g_ref, dtype) <= TOL[dtype], name


def test_lstm_default_c0_is_zero_like_the_assignment():
    a = make_inputs(3, 4, 5, 6, 4, torch.float64)
    h = ops.lstm(**a)
    h_ref, _ = ref.lstm_forward(*(np64(a[k]) for k in ("x", "h0", "Wx", "Wh", "b")))
    assert rel_error(np64(h), h_ref) <= 1e-10


def test_lstm_gate_order_is_i_f_o_g():
    # With Wx = Wh = 0, the gates equal the bias: set i = f = o = +inf-ish, g = known value.
    H = 2
    x = torch.zeros(1, 1, 3, dtype=torch.float64)
    h0 = torch.zeros(1, H, dtype=torch.float64)
    c0 = torch.full((1, H), 0.25, dtype=torch.float64)
    b = torch.tensor([30.0, 30.0, -30.0, -30.0, 30.0, 30.0, 0.5, 0.5], dtype=torch.float64)
    # i = 1, f = 0, o = 1, g = tanh(0.5): c = g, h = tanh(g)
    h, c = ops.lstm_step(x[:, 0], h0, c0, torch.zeros(3, 4 * H, dtype=torch.float64),
                         torch.zeros(H, 4 * H, dtype=torch.float64), b)
    g = np.tanh(0.5)
    np.testing.assert_allclose(c.numpy(), np.full((1, H), g), rtol=1e-12)
    np.testing.assert_allclose(h.numpy(), np.full((1, H), np.tanh(g)), rtol=1e-12)


_FLOAT32_ACTIVATION_CHECK = """
import numpy as np, torch
from a3ext import ops
# The float32 time loops use a rational tanh and sigmoid(x) = 0.5 + 0.5 tanh(x / 2)
# (rnn_pointwise.cpp). An LSTM step with Wx = [I I I I], Wh = 0, b = 0 saves the
# activated gates sigmoid(x), sigmoid(x), sigmoid(x), tanh(x) of its input x; an RNN
# with Wx = I outputs tanh(x).
x = torch.cat([torch.linspace(-30, 30, 240_001, dtype=torch.float64),
               torch.logspace(-9, 0, 20_001, dtype=torch.float64),
               -torch.logspace(-9, 0, 20_001, dtype=torch.float64)]).to(torch.float32)
H = 64
x = torch.cat([x, torch.zeros((-x.numel()) % H)]).view(-1, 1, H)
B = x.shape[0]
eye = torch.eye(H)
_, _, gates = torch.ops.a3ext.lstm_forward(x, torch.zeros(B, H), torch.zeros(B, H), torch.cat([eye] * 4, 1),
                                           torch.zeros(H, 4 * H), torch.zeros(4 * H))
gates = gates.view(B, 4, H).double()
xd = x.double().view(B, H)
sig_err = max((gates[:, k] - torch.sigmoid(xd)).abs().max().item() for k in range(3))
lstm_tanh_err = (gates[:, 3] - torch.tanh(xd)).abs().max().item()
h = ops.rnn(x, torch.zeros(B, H), eye, torch.zeros(H, H), torch.zeros(H)).double().view(B, H)
want = torch.tanh(xd)
err = (h - want).abs()
ulp = (err / (torch.finfo(torch.float32).eps * want.abs().clamp_min(torch.finfo(torch.float32).tiny))).max().item()
tiny = x.view(B, H).abs() < 1e-4
tiny_exact = bool(torch.equal(h[tiny].float(), x.view(B, H)[tiny]))  # tanh(x) rounds to x in float32 there
# special values, one per sequence (H = 1), so that inf * 0 in the projection cannot mix them
sp = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 9.0, -9.0, 0.0])
_, _, g1 = torch.ops.a3ext.lstm_forward(sp.view(8, 1, 1), torch.zeros(8, 1), torch.zeros(8, 1), torch.ones(1, 4),
                                        torch.zeros(1, 4), torch.zeros(4))
hs = ops.rnn(sp.view(8, 1, 1), torch.zeros(8, 1), torch.ones(1, 1), torch.zeros(1, 1), torch.zeros(1)).ravel()
print(sig_err, lstm_tanh_err, err.max().item(), ulp, tiny_exact, ops.cpu_isa())
print(*[repr(v) for v in g1.reshape(8, 4)[:, 0].tolist()])
print(*[repr(v) for v in hs.tolist()])
"""


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_float32_sigmoid_and_tanh_accuracy_over_the_whole_range(run_python, capability):
    """float32 tanh within 4e-7 absolute and 8 ULP of float64 tanh over [-30, 30] and
    tiny inputs (exactly x below 1e-4); sigmoid within 2.5e-7 absolute; NaN stays NaN,
    +-inf and huge inputs saturate, on every instruction set."""
    if capability == "avx512" and ops.cpu_isa() != "AVX512":
        pytest.skip("this CPU runs no AVX-512 code")
    run = run_python(_FLOAT32_ACTIVATION_CHECK, ATEN_CPU_CAPABILITY=capability)
    assert run.returncode == 0, run.stderr
    nums, gates, hs = (line.split() for line in run.stdout.strip().splitlines())
    sig_err, lstm_tanh_err, tanh_err, tanh_ulp = (float(v) for v in nums[:4])
    assert nums[5] == {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}[capability]
    assert sig_err <= 2.5e-7, sig_err
    assert lstm_tanh_err <= 4e-7 and tanh_err <= 4e-7 and tanh_ulp <= 8, (lstm_tanh_err, tanh_err, tanh_ulp)
    assert nums[4] == "True"
    # sigmoid of nan, inf, -inf, 1e30, -1e30, 9, -9, 0
    assert gates[0] == "nan"
    want = [1.0, 0.0, 1.0, 0.0, 1 / (1 + np.exp(-9.0)), 1 / (1 + np.exp(9.0)), 0.5]
    np.testing.assert_allclose([float(v) for v in gates[1:]], want, rtol=0, atol=2.5e-7)
    assert hs[0] == "nan"
    np.testing.assert_allclose([float(v) for v in hs[1:]], [1.0, -1.0, 1.0, -1.0, np.tanh(9.0), -np.tanh(9.0), 0.0],
                               rtol=0, atol=3e-7)


_FLOAT64_TANH_CHECK = """
import sys, numpy as np, torch
from a3ext import ops
rng = np.random.default_rng(0)
x = np.concatenate([rng.uniform(-25, 25, 200_000), rng.uniform(-1, 1, 200_000),
                    np.linspace(0.62, 0.63, 10_001), -np.linspace(0.62, 0.63, 10_001),
                    10.0 ** rng.uniform(-320, -1, 20_000) * rng.choice([-1, 1], 20_000)])
H = 64
x = np.concatenate([x, np.zeros((-x.size) % H)])
xt = torch.from_numpy(x).view(-1, 1, H)
h = ops.rnn(xt, torch.zeros(xt.shape[0], H, dtype=torch.float64), torch.eye(H, dtype=torch.float64),
            torch.zeros(H, H, dtype=torch.float64), torch.zeros(H, dtype=torch.float64)).numpy().ravel()
want = np.tanh(x.astype(np.longdouble))
ulp = np.abs(h.astype(np.longdouble) - want) / np.spacing(np.abs(want).astype(np.float64)).astype(np.longdouble)
# one value per sequence (H = 1), so that inf * 0 in the projection cannot mix them
special = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 40.0, -40.0, 0.0],
                       dtype=torch.float64)
hs = ops.rnn(special.view(8, 1, 1), torch.zeros(8, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
             torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)).ravel()
print(float(ulp.max()), float(ulp.mean()), ops.cpu_isa(), *[repr(v) for v in hs.tolist()])
"""


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_float64_tanh_accuracy_over_the_whole_range(run_python, capability):
    """The float64 time loops use Cephes' tanh with one division (rnn_pointwise.cpp)
    instead of SLEEF's: within 3 ULP of long double tanh over [-25, 25], around
    its branch point 0.625 and down to 1e-320, on every instruction set; NaN
    stays NaN, +-inf and huge inputs give +-1."""
    if capability == "avx512" and ops.cpu_isa() != "AVX512":
        pytest.skip("this CPU runs no AVX-512 code")
    run = run_python(_FLOAT64_TANH_CHECK, ATEN_CPU_CAPABILITY=capability)
    assert run.returncode == 0, run.stderr
    out = run.stdout.split()
    worst, mean, isa = float(out[0]), float(out[1]), out[2]
    assert isa == {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}[capability]
    assert worst <= 3.0 and mean <= 0.5, (worst, mean)
    assert out[3] == "nan" and [float(v) for v in out[4:]] == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_step_ops_match_reference(dtype, backend):
    N, D, H = 4, 5, 6
    a = make_inputs(N, 1, D, H, 1, dtype, requires_grad=True)
    x = a["x"][:, 0].detach().requires_grad_()
    nh = ops.rnn_step(x, a["h0"], a["Wx"], a["Wh"], a["b"])
    nh_ref, cache = ref.rnn_step_forward(np64(x), np64(a["h0"]), np64(a["Wx"]), np64(a["Wh"]), np64(a["b"]))
    assert rel_error(np64(nh), nh_ref, dtype) <= TOL[dtype]
    dnh = torch.randn(N, H, dtype=torch.float64).to(dtype)
    nh.backward(dnh)
    for t, g_ref in zip((x, a["h0"], a["Wx"], a["Wh"], a["b"]), ref.rnn_step_backward(np64(dnh), cache)):
        assert rel_error(np64(t.grad), g_ref, dtype) <= TOL[dtype]

    a = make_inputs(N, 1, D, H, 4, dtype, requires_grad=True)
    x = a["x"][:, 0].detach().requires_grad_()
    pc = (0.5 * torch.randn(N, H, dtype=torch.float64)).to(dtype).requires_grad_()
    nh, nc = ops.lstm_step(x, a["h0"], pc, a["Wx"], a["Wh"], a["b"])
    nh_ref, nc_ref, cache = ref.lstm_step_forward(
        np64(x), np64(a["h0"]), np64(pc), np64(a["Wx"]), np64(a["Wh"]), np64(a["b"]))
    assert rel_error(np64(nh), nh_ref, dtype) <= TOL[dtype]
    assert rel_error(np64(nc), nc_ref, dtype) <= TOL[dtype]
    dnh = torch.randn(N, H, dtype=torch.float64).to(dtype)
    dnc = torch.randn(N, H, dtype=torch.float64).to(dtype)
    torch.autograd.backward((nh, nc), (dnh, dnc))
    grads_ref = ref.lstm_step_backward(np64(dnh), np64(dnc), cache)
    for t, g_ref in zip((x, a["h0"], pc, a["Wx"], a["Wh"], a["b"]), grads_ref):
        assert rel_error(np64(t.grad), g_ref, dtype) <= TOL[dtype]


def test_lstm_step_gradient_through_next_c_only():
    a = make_inputs(2, 1, 3, 4, 4, torch.float64, requires_grad=True)
    pc = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    _, nc = ops.lstm_step(a["x"][:, 0], a["h0"], pc, a["Wx"], a["Wh"], a["b"])
    nc.sum().backward()  # dh is None inside the backward op
    _, _, cache = ref.lstm_step_forward(*(np64(t) for t in (a["x"][:, 0], a["h0"], pc, a["Wx"], a["Wh"], a["b"])))
    _, dprev_h, dprev_c, _, dWh, _ = ref.lstm_step_backward(np.zeros((2, 4)), np.ones((2, 4)), cache)
    assert rel_error(np64(pc.grad), dprev_c) <= 1e-10
    assert rel_error(np64(a["h0"].grad), dprev_h) <= 1e-10
    assert rel_error(np64(a["Wh"].grad), dWh) <= 1e-10


@pytest.mark.parametrize("engine", ["blas", "blas_batch", "own"])
def test_gradcheck_float64(engine):  # every float64 engine (own: a3ext's step GEMM, AVX-512)
    if engine not in ops.gemm_engines():
        pytest.skip(f"no {engine} engine here")
    with ops.gemm_backend(engine):
        _gradcheck_float64()


def _gradcheck_float64():
    dt = torch.float64
    a = make_inputs(3, 4, 5, 3, 1, dt, requires_grad=True)
    assert torch.autograd.gradcheck(ops.rnn, (a["x"], a["h0"], a["Wx"], a["Wh"], a["b"]))
    assert torch.autograd.gradcheck(ops.rnn_step, (a["x"][:, 1], a["h0"], a["Wx"], a["Wh"], a["b"]))
    a = make_inputs(3, 4, 5, 3, 4, dt, requires_grad=True)
    c0 = torch.randn(3, 3, dtype=dt, requires_grad=True)
    assert torch.autograd.gradcheck(ops.lstm, (a["x"], a["h0"], a["Wx"], a["Wh"], a["b"], c0))
    assert torch.autograd.gradcheck(ops.lstm_step, (a["x"][:, 2], a["h0"], c0, a["Wx"], a["Wh"], a["b"]))


def _opcheck_inputs(requires_grad):
    dt = torch.float64
    r = make_inputs(3, 4, 5, 6, 1, dt, requires_grad=requires_grad)
    l = make_inputs(3, 4, 5, 6, 4, dt, requires_grad=requires_grad)
    c0 = torch.randn(3, 6, dtype=dt, requires_grad=requires_grad)
    return r, l, c0


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward_ops(requires_grad):
    r, l, c0 = _opcheck_inputs(requires_grad)
    torch.library.opcheck(torch.ops.a3ext.rnn_forward.default, (r["x"], r["h0"], r["Wx"], r["Wh"], r["b"]))
    torch.library.opcheck(torch.ops.a3ext.lstm_forward.default, (l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"]))
    # float32 and T = 0 through the same checks (schema, fake kernel, dispatch)
    r32 = {k: v.detach().float().requires_grad_(requires_grad) for k, v in r.items()}
    torch.library.opcheck(torch.ops.a3ext.rnn_forward.default, (r32["x"], r32["h0"], r32["Wx"], r32["Wh"], r32["b"]))
    x0 = torch.zeros(3, 0, 5, dtype=torch.float64, requires_grad=requires_grad)
    torch.library.opcheck(torch.ops.a3ext.lstm_forward.default, (x0, l["h0"], c0, l["Wx"], l["Wh"], l["b"]))


def test_opcheck_backward_ops():
    r, l, c0 = _opcheck_inputs(False)
    h = ops.rnn(r["x"], r["h0"], r["Wx"], r["Wh"], r["b"])
    dh = torch.randn_like(h)
    torch.library.opcheck(torch.ops.a3ext.rnn_backward.default, (dh, r["x"], r["h0"], r["Wx"], r["Wh"], h))
    hl, c, gates = torch.ops.a3ext.lstm_forward(l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"])
    args = (l["x"], l["h0"], c0, l["Wx"], l["Wh"], hl, c, gates)
    dc = torch.randn_like(c)
    for up in ((dh, dc), (dh, None), (None, dc), (None, None)):
        torch.library.opcheck(torch.ops.a3ext.lstm_backward.default, up + args)


def test_torch_compile_smoke():
    a = make_inputs(4, 5, 6, 7, 4, torch.float32, requires_grad=True)

    def f(x, h0, Wx, Wh, b):
        return ops.lstm(x, h0, Wx, Wh, b).tanh().sum()

    compiled = torch.compile(f, fullgraph=True)
    loss_c = compiled(**a)
    grads_c = torch.autograd.grad(loss_c, list(a.values()))
    loss_e = f(**a)
    grads_e = torch.autograd.grad(loss_e, list(a.values()))
    torch.testing.assert_close(loss_c, loss_e)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)


def test_gil_released_while_ops_run():
    assert a3ext._C.torch_version == torch.__version__
    assert torch.ops.a3ext._gil_held() is False


def test_cpu_isa_is_reported():
    assert ops.cpu_isa() in ("DEFAULT", "AVX2", "AVX512")


def test_gemm_engines_are_listed_and_auto_records_its_choice():
    assert ops.gemm_engines()[0] == "blas"
    a = make_inputs(8, 3, 16, 32, 4, torch.float32)
    torch.ops.a3ext._clear_gemm_engine_choices()
    with ops.gemm_backend("auto"):
        ops.lstm(**a)
    choices = ops.gemm_engine_choices()
    key = "lstm_fwd Float N8 T4 D16 H32"
    if len(ops.gemm_engines()) > 1:
        assert choices[key]["engine"] in ops.gemm_engines()
        assert set(choices[key]["trial_ms"]) <= set(ops.gemm_engines())


def _lstm_and_grads(a, engine):
    """ops.lstm on inputs `a` under `engine`: h and every input's gradient (cotangent cos(h))."""
    with ops.gemm_backend(engine):
        h = ops.lstm(**a)
        return h, torch.autograd.grad(h, list(a.values()), torch.cos(h))


def _assert_own_matches_blas(a, grad_tol):
    """The float64 LSTM on inputs `a` under the own engine against blas: outputs to
    1e-12, every gradient (cotangent cos(h)) to grad_tol."""
    h_own, g_own = _lstm_and_grads(a, "own")
    h_blas, g_blas = _lstm_and_grads(a, "blas")
    torch.testing.assert_close(h_own, h_blas, rtol=1e-12, atol=1e-12)
    for g, g_ref in zip(g_own, g_blas):
        torch.testing.assert_close(g, g_ref, rtol=grad_tol, atol=grad_tol)


def test_float64_calibration_times_the_own_step_gemm_and_it_agrees_with_blas():
    # The own engine (AVX-512 CPUs): float64 recurrent products on the weight packed
    # once per call (csrc/cpu/panel_gemm.cpp). Rows in blocks of up to 13 (23 rows:
    # 12 + 11), 16-column panels with a tail (H = 37: 4H = 148 = 9 x 16 + 4).
    if "own" not in ops.gemm_engines():
        pytest.skip("no 'own' engine on this CPU (needs AVX-512)")
    a = make_inputs(23, 5, 19, 37, 4, torch.float64, requires_grad=True)
    torch.ops.a3ext._clear_gemm_engine_choices()
    with ops.gemm_backend("auto"):
        ops.lstm(**a).sum().backward()
    choices = ops.gemm_engine_choices()
    for key in ("lstm_fwd Double N32 T8 D19 H37", "lstm_bwd Double N32 T8 D19 H37"):
        assert "own" in choices[key]["trial_ms"], choices[key]
    _assert_own_matches_blas(a, grad_tol=1e-11)


def _trial_plan(B, T, D, H, G, backward, float64, engines):
    """Plain reference of layer_engine's trial plan (csrc/cpu/rnn_kernel.cpp): batch
    rows and steps of the longer timed run, and the calibration's work in float32
    FLOPs (warm-up runs, one round and the extra round), at most 1.35e10."""
    rows, row_flops = min(B, 64), 2 * (D + H) * G * (3 if backward else 1) * (2 if float64 else 1)
    steps = 1 if T <= 1 else min(max(3, int(6e8 / max(1, rows * row_flops))), min(T, 8))
    def work(r, t):
        run = 1 if T <= 1 else 1 + t
        return r * row_flops * (engines * (1 + run) + 2 * run)
    if T > 1 and work(rows, steps) > 1.35e10:
        steps = min(steps, 2)
    if work(rows, steps) > 1.35e10:
        rows = max(min(B, 16), int(rows * 1.35e10 / work(rows, steps)))
    return rows, steps, work(rows, steps)


def test_calibration_keeps_to_its_work_budget_on_the_callers_weights():
    # The heaviest class here (float64 LSTM, N = 128, D = H = 512: 3.7e10 FLOPs with
    # 64-row, 3-step trials, 87-112 ms) runs 2-step trials on fewer rows; the
    # float32 class of the N = 50 benchmark keeps its 50 rows and 3 steps. The trials
    # run on the call's own weights, here a transposed (non-contiguous) Wx, and the
    # calibrating call's results are the forced engines' (no trial buffer leaks out).
    if len(ops.gemm_engines()) == 1:
        pytest.skip("one GEMM engine: nothing to calibrate")
    for (N, T, D, H, dtype) in ((128, 16, 512, 512, torch.float64), (50, 16, 256, 512, torch.float32)):
        a = make_inputs(N, T, D, H, 4, dtype, scale=0.05)
        a["Wx"] = a["Wx"].t().contiguous().t()
        assert not a["Wx"].is_contiguous()
        for v in a.values():
            v.requires_grad_(True)
        torch.ops.a3ext._clear_gemm_engine_choices()
        h, grads = _lstm_and_grads(a, "auto")
        choices = ops.gemm_engine_choices()
        # shape classes: N and T rounded up to powers of two
        key = {p: f"lstm_{p} {'Double' if dtype == torch.float64 else 'Float'} N{128 if N == 128 else 64} T16 D{D} H{H}"
               for p in ("fwd", "bwd")}
        for p, backward in (("fwd", False), ("bwd", True)):
            c = choices[key[p]]
            rows, steps, work = _trial_plan(N, T, D, H, 4 * H, backward, dtype == torch.float64, len(c["trial_ms"]))
            assert c["trial"] == {"rows": rows, "steps": steps}, (key[p], c)
            assert work <= 1.35e10 or rows == 16, (key[p], work)
        if dtype == torch.float64:
            assert choices[key["bwd"]]["trial"]["rows"] < 64 and choices[key["bwd"]]["trial"]["steps"] == 2
        else:
            assert choices[key["bwd"]]["trial"] == {"rows": 50, "steps": 3}
        with ops.gemm_backend(choices[key["fwd"]]["engine"]):
            h_forced = ops.lstm(**a)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(h, h_forced, rtol=tol, atol=tol)
        _, grads_blas = _lstm_and_grads(a, "blas")
        gtol = 1e-9 if dtype == torch.float64 else 2e-3
        for g, g_blas in zip(grads, grads_blas):
            torch.testing.assert_close(g, g_blas, rtol=gtol, atol=gtol)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="minor page faults are read with getrusage (Linux)")
def test_calibration_timings_leave_out_page_faults():
    # The trials time the real kernels, whose fresh outputs fault on every page or on
    # none depending on the heap's state: the faults are counted and taken out at this
    # machine's cost per fault, so they cannot decide between engines.
    per_fault = torch.ops.a3ext._page_fault_seconds()
    assert 1e-8 < per_fault < 1e-2, per_fault  # ~1 us a 4 KB page; a 2 MB huge page costs more
    # 64 MB mapped afresh (16,384 pages; 32 with transparent huge pages always on).
    # Without the correction counted == raw; with it 0.25-0.5 of raw on a quiet
    # machine (faults in a large region cost more than in the 4 MB one measured), 0.51
    # once under load: the best of three tries, against a bound far from 1.
    tries = [torch.ops.a3ext._seconds_touching_fresh_memory(64) for _ in range(3)]
    assert all(faults >= 32 for _, _, faults in tries), tries
    assert all(0 <= counted <= raw for raw, counted, _ in tries), tries
    assert min(counted / raw for raw, counted, _ in tries) < 0.75, tries


@pytest.mark.parametrize("N", [*range(1, 14), 27, 50])
def test_own_engine_every_row_block_size(N):
    # The micro-kernel is compiled for 1..13 rows (panel_gemm.cpp); a batch of N rows
    # runs in ceil(N / 13) near-equal blocks: N <= 13 exercises each size alone,
    # 27 = 9 + 9 + 9 and 50 = 13 + 13 + 12 + 12. H = 21: 4H = 84 = 5 x 16 + 4.
    if "own" not in ops.gemm_engines():
        pytest.skip("no 'own' engine on this CPU (needs AVX-512)")
    a = make_inputs(N, 3, 5, 21, 4, torch.float64, requires_grad=True)
    _assert_own_matches_blas(a, grad_tol=1e-11)


def test_own_engine_reads_rows_in_place_or_copies_them():
    # The own step GEMM copies a step's rows to a padded stride (each thread) only when
    # they lie a multiple of 4 KB apart and fit 2^20 elements, else it reads them where
    # they lie. LSTM, 520 rows: the forward's h rows (T * H = 1024 doubles apart) are
    # copied, the backward's padded gradient rows read in place. RNN, H = 1024, 1040
    # rows: the forward's rows (2048 doubles apart) exceed 2^20 elements with the
    # padding and are read in place too. Both agree with blas.
    if "own" not in ops.gemm_engines():
        pytest.skip("no 'own' engine on this CPU (needs AVX-512)")
    a = make_inputs(520, 2, 8, 512, 4, torch.float64, requires_grad=True, scale=0.05)
    _assert_own_matches_blas(a, grad_tol=1e-10)
    a = make_inputs(1040, 2, 8, 1024, 1, torch.float64, requires_grad=True, scale=0.05)
    results = {}
    for engine in ("own", "blas"):
        with ops.gemm_backend(engine):
            h = ops.rnn(**a)
            results[engine] = (h, torch.autograd.grad(h, list(a.values()), torch.cos(h)))
    torch.testing.assert_close(results["own"][0], results["blas"][0], rtol=1e-12, atol=1e-12)
    for g, g_ref in zip(results["own"][1], results["blas"][1]):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_gemm_engine_choices_round_trip_through_disk(tmp_path):
    torch.ops.a3ext._set_gemm_engine_choice("rnn_fwd Float N4 T4 D3 H5", "blas")
    ops.save_gemm_engine_choices(tmp_path / "engines.json")
    torch.ops.a3ext._clear_gemm_engine_choices()
    assert ops.load_gemm_engine_choices(tmp_path / "engines.json") >= 1
    assert ops.gemm_engine_choices()["rnn_fwd Float N4 T4 D3 H5"]["engine"] == "blas"
    assert ops.load_gemm_engine_choices(tmp_path / "missing.json") == 0


def test_without_mkl_the_other_engines_still_run(run_python):
    # A3EXT_DISABLE_MKL hides MKL's routines, as on a torch build without MKL.
    code = ("import torch, a3ext; from a3ext import ops\n"
            "assert 'mkl' not in ops.gemm_engines()\n"
            "x = torch.randn(3, 4, 5); h0 = torch.randn(3, 6)\n"
            "W = [torch.randn(5, 24), torch.randn(6, 24), torch.randn(24)]\n"
            "h = ops.lstm(x.requires_grad_(), h0, *W); h.sum().backward()\n"
            "g = ops.gram(torch.randn(1, 70, 33, 33))\n"
            "try:\n"
            "    with ops.gemm_backend('mkl'):\n"
            "        ops.lstm(x, h0, *W)\n"
            "    raise SystemExit('forcing mkl should fail')\n"
            "except RuntimeError as e:\n"
            "    assert 'no MKL packed GEMM' in str(e)\n"
            "print('ok')\n")
    out = run_python(code, A3EXT_DISABLE_MKL="1")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_auto_under_torch_deterministic_mode_measures_nothing_and_repeats_bit_for_bit():
    # Timing-based choices differ between processes and so would the rounding; with
    # torch.use_deterministic_algorithms(True) `auto` takes a stored choice or blas.
    a = make_inputs(24, 5, 48, 160, 4, torch.float32, requires_grad=True, scale=0.2)

    def run(engine):
        with ops.gemm_backend(engine):
            h = ops.lstm(**a)
            return (h, *torch.autograd.grad(h, list(a.values()), torch.ones_like(h)))

    previous = torch.are_deterministic_algorithms_enabled()
    torch.ops.a3ext._clear_gemm_engine_choices()
    torch.use_deterministic_algorithms(True)
    try:
        got = run("auto")
        assert ops.gemm_engine_choices() == {}  # nothing was measured
        for x, y in zip(got, run("blas")):
            assert torch.equal(x, y)
        # a stored choice (what load_gemm_engine_choices sets) is taken
        torch.ops.a3ext._set_gemm_engine_choice("lstm_fwd Float N32 T8 D48 H160", "blas_batch")
        torch.ops.a3ext._set_gemm_engine_choice("lstm_bwd Float N32 T8 D48 H160", "blas_batch")
        got = run("auto")
        for x, y in zip(got, run("blas_batch")):
            assert torch.equal(x, y)
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.ops.a3ext._clear_gemm_engine_choices()


def test_gemm_backend_selection():
    with ops.gemm_backend("blas"):
        assert torch.ops.a3ext._set_gemm_backend("blas") == "blas"
    assert torch.ops.a3ext._set_gemm_backend("auto") == "auto"
    with pytest.raises(ValueError, match=r"unknown GEMM backend 'cuda'; expected one of 'auto', 'blas', 'onednn', 'mkl', 'blas_batch', 'own'"):
        with ops.gemm_backend("cuda"):
            pass
    with pytest.raises(TypeError, match=r"gemm_backend: name must be a str, one of 'auto', .*, but got NoneType"):
        with ops.gemm_backend(None):
            pass
    assert torch.ops.a3ext._set_gemm_backend("auto") == "auto"  # unchanged by the refused names


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_engines_agree_on_a_large_float32_problem(cell):
    # Big enough for "auto" to pick oneDNN; compare to the BLAS engine and the reference.
    G = 4 if cell == "lstm" else 1
    a = make_inputs(24, 5, 48, 160, G, torch.float32, requires_grad=True, scale=0.2)
    fn = ops.lstm if cell == "lstm" else ops.rnn
    results = {}
    engines = [e for e in ("blas", "onednn", "mkl", "blas_batch", "auto") if e == "auto" or e in ops.gemm_engines()]
    for engine in engines:
        with ops.gemm_backend(engine):
            h = fn(**a)
            grads = torch.autograd.grad(h, list(a.values()), torch.ones_like(h))
        results[engine] = (h, grads)
    for engine in engines[1:]:
        torch.testing.assert_close(results[engine][0], results["blas"][0], rtol=1e-5, atol=1e-5)
        for g1, g2 in zip(results[engine][1], results["blas"][1]):
            torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-4)


def _workspace_stats():
    taken, reused, kept, buffers, nbytes = map(int, torch.ops.a3ext._workspace_stats().split())
    return dict(taken=taken, reused=reused, kept=kept, buffers=buffers, nbytes=nbytes)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "rnn_packed", "lstm_packed"])
def test_backward_temporaries_come_from_the_workspace_pool_and_results_do_not_alias_it(cell, dtype, backend):
    # The backward's gate gradients and shifted states (and MKL's packed weights)
    # are pooled temporaries (csrc/cpu/workspace.h). A second call reuses them; a
    # pooled buffer that something still shares when its op returns (an output
    # aliasing it) would be kept out of the pool and counted as "kept"; and nothing
    # an op returned may change when later calls write the same pooled memory.
    G = 4 if cell.startswith("lstm") else 1
    fn = {"rnn": ops.rnn, "lstm": ops.lstm}[cell.split("_")[0]]
    N, T, D, H = 6, 5, 7, 24
    bs = torch.tensor([6, 6, 4, 3, 1])  # packed: sequences of lengths 5, 4, 4, 3, 2, 2

    def inputs(scale):
        a = make_inputs(N, T, D, H, G, dtype, scale=scale)
        if cell.endswith("packed"):
            a["x"] = a["x"].transpose(0, 1).reshape(N * T, D)[: int(bs.sum())].contiguous()
        return {k: v.requires_grad_() for k, v in a.items()}

    def grads(inputs):
        if cell.endswith("packed"):
            packed = ops.lstm_packed if G == 4 else ops.rnn_packed
            h = packed(inputs["x"], bs, inputs["h0"], inputs["Wx"], inputs["Wh"], inputs["b"])
        else:
            h = fn(**inputs)
        return torch.autograd.grad(h, list(inputs.values()), torch.ones_like(h))

    a, b = inputs(0.5), inputs(0.25)
    first = grads(a)
    kept_values = [g.clone() for g in first]
    before = _workspace_stats()
    second = grads(b)
    after = _workspace_stats()
    assert after["reused"] > before["reused"], (before, after)
    assert after["kept"] == before["kept"] == 0, (before, after)
    for g, k in zip(first, kept_values):
        assert torch.equal(g, k)
    # the pooled buffers held the first call's values: the third call, on the
    # second call's inputs, must not depend on them
    for g1, g2 in zip(second, grads(b)):
        assert torch.equal(g1, g2)


def test_workspace_pool_can_be_emptied():
    a = make_inputs(4, 3, 5, 8, 4, torch.float64, requires_grad=True)
    h = ops.lstm(**a)
    torch.autograd.grad(h, list(a.values()), torch.ones_like(h))
    assert _workspace_stats()["buffers"] > 0
    torch.ops.a3ext._clear_workspaces()
    stats = _workspace_stats()
    assert stats["buffers"] == 0 and stats["nbytes"] == 0, stats


# ---------------------------------------------------------------------------
# Layouts and edge sizes
def test_noncontiguous_and_expanded_inputs_are_handled():
    a = make_inputs(3, 4, 5, 6, 4, torch.float64)
    x_t = a["x"].transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    Wx_t = a["Wx"].t().contiguous().t()
    h0_e = a["h0"][:1].expand(3, 6)  # stride 0 on the batch dim
    b_e = torch.tensor(0.1, dtype=torch.float64).expand(24)
    assert not x_t.is_contiguous() and not Wx_t.is_contiguous()
    got = ops.lstm(x_t, h0_e, Wx_t, a["Wh"], b_e)
    want = ops.lstm(a["x"], h0_e.contiguous(), a["Wx"], a["Wh"], b_e.contiguous())
    assert torch.equal(got, want)
    h_ref, _ = ref.lstm_forward(np64(a["x"]), np64(h0_e), np64(a["Wx"]), np64(a["Wh"]), np64(b_e))
    assert rel_error(np64(got), h_ref) <= 1e-10
    # expanded upstream gradient (what .sum() produces) in the backward op
    h0g = a["h0"].clone().requires_grad_()
    ops.rnn(a["x"], h0g, a["Wx"][:, :6], a["Wh"][:, :6], a["b"][:6]).sum().backward()
    _, cache = ref.rnn_forward(np64(a["x"]), np64(a["h0"]), np64(a["Wx"][:, :6]), np64(a["Wh"][:, :6]), np64(a["b"][:6]))
    assert rel_error(np64(h0g.grad), ref.rnn_backward(np.ones((3, 4, 6)), cache)[1]) <= 1e-10


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_empty_sequence_and_empty_batch(cell, backend):
    gates = 1 if cell == "rnn" else 4
    fn = ops.rnn if cell == "rnn" else ops.lstm
    for N, T in ((3, 0), (0, 4), (0, 0)):
        a = make_inputs(N, T, 5, 6, gates, torch.float64, requires_grad=True)
        h = fn(**a)
        assert h.shape == (N, T, 6)
        (h.sum() + 0 * sum(v.sum() for v in a.values())).backward()
        for k, v in a.items():
            assert v.grad is not None and v.grad.shape == v.shape
            assert torch.count_nonzero(v.grad) == 0, k  # nothing depends on any input


# ---------------------------------------------------------------------------
# Bad input: a clear error naming the argument, the expected and the actual value.
def _lstm_args(**over):
    a = make_inputs(3, 4, 5, 6, 4, torch.float32)
    a.update(over)
    return a


BAD_CASES = [
    ("x 2-D", dict(x=torch.zeros(3, 5)), ValueError, r"x of shape \(N, T, D\).*2-D"),
    ("h0 1-D", dict(h0=torch.zeros(6)), ValueError, r"h0 of shape \(N, H\).*1-D"),
    ("N mismatch", dict(h0=torch.zeros(2, 6)), ValueError, r"h0 of shape \(N, H\) with N = 3.*\[2, 6\]"),
    ("D mismatch", dict(Wx=torch.zeros(4, 24)), ValueError, r"Wx of shape \(D, 4H\) = \[5, 24\].*\[4, 24\]"),
    ("H mismatch", dict(Wh=torch.zeros(6, 20)), ValueError, r"Wh of shape \(H, 4H\) = \[6, 24\].*\[6, 20\]"),
    ("gate width", dict(Wx=torch.zeros(5, 6)), ValueError, r"Wx of shape \(D, 4H\) = \[5, 24\].*\[5, 6\]"),
    ("bias", dict(b=torch.zeros(6)), ValueError, r"b of shape \(4H,\) = \[24\].*\[6\]"),
    ("mixed dtype", dict(Wh=torch.zeros(6, 24, dtype=torch.float64)), TypeError, r"same dtype.*Wh is torch.float64.*x is torch.float32"),
    ("integer x", dict(x=torch.zeros(3, 4, 5, dtype=torch.int64)), TypeError, r"x must be torch.float32 or torch.float64.*int64"),
    ("integer b", dict(b=torch.zeros(24, dtype=torch.int32)), TypeError, r"b must be a floating-point tensor.*int32"),
    ("half x", dict(x=torch.zeros(3, 4, 5, dtype=torch.float16)), TypeError, r"x must be torch.float32 or torch.float64.*float16"),
]


@pytest.mark.parametrize("name,over,exc,pattern", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_inputs_eager(name, over, exc, pattern):
    a = _lstm_args(**over)
    with pytest.raises(exc, match=pattern):
        ops.lstm(**a)


@pytest.mark.parametrize("name,over,exc,pattern", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_inputs_fake(name, over, exc, pattern):
    # The fake kernels (torch.compile, meta tensors) raise the same errors.
    from torch._subclasses.fake_tensor import FakeTensorMode
    a = _lstm_args(**over)
    with FakeTensorMode() as mode:
        fa = {k: mode.from_tensor(v) for k, v in a.items()}
        with pytest.raises(exc, match=pattern):
            ops.lstm(**fa)


def test_bad_inputs_rnn_and_steps():
    a = make_inputs(3, 4, 5, 6, 1, torch.float32)
    with pytest.raises(ValueError, match=r"a3ext.rnn: expected Wh of shape \(H, H\) = \[6, 6\], but got \[6, 7\]"):
        ops.rnn(a["x"], a["h0"], a["Wx"], torch.zeros(6, 7), a["b"])
    with pytest.raises(ValueError, match=r"a3ext.rnn_step: expected x of shape \(N, D\).*3-D"):
        ops.rnn_step(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    l = make_inputs(3, 4, 5, 6, 4, torch.float32)
    with pytest.raises(ValueError, match=r"a3ext.lstm_step: expected prev_c of shape \(N, H\) = \[3, 6\], but got \[3, 5\]"):
        ops.lstm_step(l["x"][:, 0], l["h0"], torch.zeros(3, 5), l["Wx"], l["Wh"], l["b"])
    with pytest.raises(ValueError, match=r"a3ext.lstm_step: expected prev_h of shape \(N, H\)"):
        ops.lstm_step(l["x"][:, 0], l["h0"][0], l["h0"], l["Wx"], l["Wh"], l["b"])


def test_bad_inputs_mixed_devices():
    a = _lstm_args(Wh=torch.zeros(6, 24, device="meta"))
    with pytest.raises(ValueError, match=r"same device.*Wh is on meta.*x is on cpu"):
        ops.lstm(**a)


def test_bad_inputs_backward_ops():
    l = make_inputs(3, 4, 5, 6, 4, torch.float64)
    c0 = torch.zeros(3, 6, dtype=torch.float64)
    h, c, gates = torch.ops.a3ext.lstm_forward(l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"])
    with pytest.raises(ValueError, match=r"a3ext.lstm_backward: expected gates of shape \(N, T, 4H\) = \[3, 4, 24\], but got \[3, 4, 23\]"):
        torch.ops.a3ext.lstm_backward(None, None, l["x"], l["h0"], c0, l["Wx"], l["Wh"], h, c, gates[..., :23])
    with pytest.raises(ValueError, match=r"a3ext.lstm_backward: expected dh of shape \(N, T, H\)"):
        torch.ops.a3ext.lstm_backward(h[:, :2], None, l["x"], l["h0"], c0, l["Wx"], l["Wh"], h, c, gates)
    r = make_inputs(3, 4, 5, 6, 1, torch.float64)
    hr = ops.rnn(**r)
    with pytest.raises(TypeError, match=r"a3ext.rnn_backward: all inputs must have the same dtype, but dh is torch.float32"):
        torch.ops.a3ext.rnn_backward(hr.float(), r["x"], r["h0"], r["Wx"], r["Wh"], hr)


# ---------------------------------------------------------------------------
# Bad calls the dispatcher used to answer itself (issue 14): the ops' own error,
# the same exception and first line in eager mode and under FakeTensorMode.
def _eager_and_fake(fn, args, exc, pattern):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with pytest.raises(exc, match=pattern) as real:
        fn(*args)
    mode = FakeTensorMode()
    fargs = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
    with mode, pytest.raises(exc) as fake:
        fn(*fargs)
    assert str(real.value).splitlines()[0] == str(fake.value).splitlines()[0]


@pytest.mark.parametrize("fn", [ops.rnn, torch.ops.a3ext.rnn_forward], ids=["public", "dispatcher"])
def test_none_and_sparse_arguments(fn):
    a = make_inputs(2, 3, 4, 5, 1, torch.float32)
    args = [a[k] for k in ("x", "h0", "Wx", "Wh", "b")]
    _eager_and_fake(fn, [*args[:4], None], TypeError, r"a3ext.rnn: b is required, got None")
    _eager_and_fake(fn, [None, *args[1:]], TypeError, r"a3ext.rnn: x is required, got None")
    _eager_and_fake(fn, [args[0], args[1], args[2].to_sparse(), *args[3:]], TypeError,
                    r"a3ext.rnn: Wx must be a dense tensor \(torch.strided layout\), but got a torch.sparse_coo tensor")
    with pytest.raises(TypeError, match=r"a3ext.rnn: Wh must be a dense tensor .* torch._mkldnn tensor"):
        fn(*args[:3], args[3].to_mkldnn(), args[4])
    with pytest.raises(TypeError, match=r"a3ext.rnn: h0 must be a floating-point tensor .* but got torch.qint8"):
        fn(args[0], torch.quantize_per_tensor(args[1], 0.1, 0, torch.qint8), *args[2:])


def test_all_none_and_non_tensor_arguments():
    with pytest.raises(TypeError, match=r"a3ext.gram: features is required, got None"):
        torch.ops.a3ext.gram_forward(None)
    with pytest.raises(TypeError, match=r"a3ext.gram: features is required, got None"):
        ops.gram(None)
    with pytest.raises(TypeError, match=r"a3ext.gram: normalize must be a bool, but got int 2"):
        ops.gram(torch.zeros(1, 2, 3, 3), 2)
    a = make_inputs(2, 3, 4, 5, 4, torch.float32)
    x1 = a["x"][:, 0]
    with pytest.raises(TypeError, match=r"a3ext.rnn_step: x must be a torch.Tensor, but got list"):
        ops.rnn_step(x1.tolist(), a["h0"], a["Wx"][:, :5], a["Wh"][:, :5], a["b"][:5])
    with pytest.raises(TypeError, match=r"a3ext.lstm_step: prev_h must be a torch.Tensor, but got ndarray"):
        ops.lstm_step(x1, a["h0"].numpy(), a["h0"], a["Wx"], a["Wh"], a["b"])
    with pytest.raises(TypeError, match=r"a3ext.lstm: h0 is required, got None"):
        ops.lstm(a["x"], None, a["Wx"], a["Wh"], a["b"])


def test_shape_arithmetic_overflow():
    """4H for H = 2**62 wraps to 0 in int64: refused, not taken as width-0 weights."""
    H = 2 ** 62
    args = (torch.empty(0, 1, 0), torch.empty(0, H), torch.empty(0, H), torch.empty(0, 0), torch.empty(H, 0),
            torch.empty(0))
    _eager_and_fake(torch.ops.a3ext.lstm_forward, args, ValueError,
                    r"a3ext.lstm: expected h0.size\(1\) = H with 4H < 2\*\*63, but got H = 4611686018427387904")
    n = 2 ** 31  # outputs of 2**62 * 256 elements (the inputs are zero-stride views)
    z = torch.zeros(())
    args = (torch.empty(n, n, 0), z.expand(n, 256), z.expand(0, 256), z.expand(256, 256), z.expand(256))
    _eager_and_fake(torch.ops.a3ext.rnn_forward, args, ValueError, r"a3ext.rnn: the output h of shape \(N, T, H\) "
                    r"= \[2147483648, 2147483648, 256\] would be too large")


@pytest.mark.parametrize("N,T", [(2 ** 40, 1), (1, 2 ** 40)])
def test_zero_element_outputs_do_not_allocate_by_other_dimensions(N, T):
    e = torch.empty
    h = ops.rnn(e(N, T, 0), e(N, 0), e(0, 0), e(0, 0), e(0))
    assert h.shape == (N, T, 0)
    h, c, gates = torch.ops.a3ext.lstm_forward(e(N, T, 0), e(N, 0), e(N, 0), e(0, 0), e(0, 0), e(0))
    assert h.shape == c.shape == gates.shape == (N, T, 0)
    grads = torch.ops.a3ext.lstm_backward(None, None, e(N, T, 0), e(N, 0), e(N, 0), e(0, 0), e(0, 0), h, c, gates)
    assert [tuple(g.shape) for g in grads] == [(N, T, 0), (N, 0), (N, 0), (0, 0), (0, 0), (0,)]



def test_every_tensor_none():
    """No tensor at all (no dispatch key): the op's error, not 'no tensor arguments'."""
    with pytest.raises(TypeError, match=r"a3ext.rnn: x is required, got None"):
        torch.ops.a3ext.rnn_forward(None, None, None, None, None)
