"""The CUDA kernels (csrc/cuda) against the float64 reference and the CPU kernels:
sizes (H, N, T or D = 0 too), layouts (non-contiguous, expanded), the cell-state
gradient, the Gram matrix with and without normalisation, a non-default stream, a
second device, opcheck and gradcheck, and a CaptioningRNN trained and decoded on
CUDA. Skipped on machines without a CUDA device; on a GPU machine run
`bash scripts/gpu_check.sh` (or `python -m pytest python_tests/test_cuda.py -rA`).

Inputs are drawn at the scale of an initialised network (weights randn /
sqrt(fan_in), as CaptioningRNN draws them). With larger weights (0.5 randn at
H = 128) the recurrence amplifies rounding over the steps until two correct
implementations (even the CPU kernels' two GEMM engines) disagree beyond any fixed
tolerance. Errors are relative to the largest magnitude of the float64 reference
(`max_error`), for float64 and float32 alike: elementwise relative error is
meaningless for entries that cancel to near zero. Measured on the CPU kernels and
a per-step torch composite at these shapes: about 1e-15 (float64) and 1e-6
(float32), against tolerances of 1e-10 and 1e-4.
"""
import copy
import math

import numpy as np
import pytest
import torch

import a3ext  # noqa: F401
from a3ext import ops, reference as ref

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
TWO_GPUS = pytest.mark.skipif(not CUDA or torch.cuda.device_count() < 2, reason="needs two CUDA devices")

TOL = {torch.float64: 1e-10, torch.float32: 1e-4}
KEYS = ("x", "h0", "Wx", "Wh", "b")
# (N, T, D, H): tiny, odd, D != H, and the larger case
SHAPES = [(1, 1, 1, 1), (2, 3, 4, 5), (5, 7, 11, 13), (64, 9, 33, 128)]
# one of H, N, T, D is 0 (and all of them)
EMPTY_SHAPES = [(3, 4, 5, 0), (0, 4, 5, 6), (3, 0, 5, 6), (3, 4, 0, 6), (64, 4, 0, 256), (0, 0, 0, 0)]


# The device under test. The tests are written against DEV so that their CPU halves
# can be run on a machine without a GPU (set test_cuda.DEV = "cpu" and call them).
DEV = "cuda"


@pytest.fixture(autouse=True)
def _ieee_float32():
    """float32 GEMMs in full precision (torch's default; TF32 would break the 1e-4 tolerance)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def max_error(got, want) -> float:
    """max |got - want| / max |want|, in float64 (0 for empty tensors)."""
    got = np.asarray(got.detach().cpu().double() if isinstance(got, torch.Tensor) else got, dtype=np.float64)
    want = np.asarray(want.detach().cpu().double() if isinstance(want, torch.Tensor) else want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.size == 0:
        return 0.0
    return float(np.max(np.abs(got - want)) / max(1e-8, np.max(np.abs(want))))


def make_inputs(N, T, D, H, G, seed=0):
    """float64 CPU tensors x (N, T, D), h0 (N, H), Wx (D, GH), Wh (H, GH), b (GH,),
    c0 (N, H) and an upstream gradient dh (N, T, H); weights randn / sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed + N + 10 * T + 100 * D + 1000 * H + G)

    def r(*s, scale=1.0):
        return scale * torch.randn(*s, generator=g, dtype=torch.float64)

    a = dict(x=r(N, T, D), h0=r(N, H, scale=0.5), Wx=r(D, G * H, scale=1 / math.sqrt(max(D, 1))),
             Wh=r(H, G * H, scale=1 / math.sqrt(max(H, 1))), b=r(G * H, scale=0.1))
    return a, r(N, H, scale=0.5), r(N, T, H)


def leaves(a, dtype, device):
    return {k: v.to(device=device, dtype=dtype).detach().requires_grad_() for k, v in a.items()}


def reference(cell, a, c0, dh, dc=None):
    """The float64 numpy reference: h, c and the gradients of x, h0, Wx, Wh, b (and c0)."""
    args = [a[k].numpy() for k in KEYS]
    if cell == "rnn":
        h, cache = ref.rnn_forward(*args)
        return h, None, dict(zip(KEYS, ref.rnn_backward(dh.numpy(), cache)))
    h, cache = ref.lstm_forward_c0(args[0], args[1], c0.numpy(), *args[2:])
    dx, dh0, dc0, dWx, dWh, db = ref.lstm_backward_full(dh.numpy(), cache, None if dc is None else dc.numpy())
    return h, cache["c"], dict(x=dx, h0=dh0, c0=dc0, Wx=dWx, Wh=dWh, b=db)


def run_op(cell, t, c0=None):
    return ops.rnn(**t) if cell == "rnn" else ops.lstm(**t, c0=c0)


def check_against_reference(cell, shape, dtype, device):
    """Forward and backward of the op on `device` against the float64 reference."""
    N, T, D, H = shape
    G = 4 if cell == "lstm" else 1
    a, c0, dh = make_inputs(N, T, D, H, G)
    h_ref, _, g_ref = reference(cell, a, c0, dh)
    t = leaves(a, dtype, device)
    c0_t = c0.to(device=device, dtype=dtype).detach().requires_grad_()
    h = run_op(cell, t, c0_t)
    assert h.device.type == torch.device(device).type and h.dtype == dtype and h.shape == (N, T, H)
    (h * dh.to(device=device, dtype=dtype)).sum().backward()
    assert max_error(h, h_ref) <= TOL[dtype], "h"
    got = {k: t[k].grad for k in KEYS}
    if cell == "lstm":
        got["c0"] = c0_t.grad
    for k, g in got.items():
        assert g is not None and g.shape == g_ref[k].shape, k
        assert max_error(g, g_ref[k]) <= TOL[dtype], k
    return h.detach().cpu(), {k: g.detach().cpu() for k, g in got.items()}


# ---------------------------------------------------------------------------
# correctness against the reference and the CPU kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cuda_matches_reference_and_cpu(cell, shape, dtype):
    h_dev, g_dev = check_against_reference(cell, shape, dtype, DEV)
    h_cpu, g_cpu = check_against_reference(cell, shape, dtype, "cpu")
    # each within TOL of the reference, so within 2 TOL of each other
    assert max_error(h_dev, h_cpu) <= 2 * TOL[dtype]
    for k in g_cpu:
        assert max_error(g_dev[k], g_cpu[k]) <= 2 * TOL[dtype], k


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", EMPTY_SHAPES, ids=["H0", "N0", "T0", "D0", "D0_large", "all0"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cuda_empty_sizes(cell, shape, dtype):
    """H, N, T or D = 0: no zero-size launch, the reference's (possibly empty) results."""
    check_against_reference(cell, shape, dtype, DEV)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_cell_state_gradient(dtype):
    """An upstream gradient on the cell states (dc), with and without dh, and through
    lstm_step's next_c alone."""
    N, T, D, H = 4, 6, 5, 7
    a, c0, dh = make_inputs(N, T, D, H, 4)
    dc = torch.randn(N, T, H, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for up_h, up_c in ((dh, dc), (None, dc), (dh, None)):
        h_ref, c_ref, g_ref = reference("lstm", a, c0, dh if up_h is not None else torch.zeros_like(dh), up_c)
        t = leaves(a, dtype, DEV)
        c0_t = c0.to(device=DEV, dtype=dtype).detach().requires_grad_()
        h, c, _ = torch.ops.a3ext.lstm_forward(t["x"], t["h0"], c0_t, t["Wx"], t["Wh"], t["b"])
        assert max_error(h, h_ref) <= TOL[dtype] and max_error(c, c_ref) <= TOL[dtype]
        outs, grads = zip(*[(o, u.to(device=DEV, dtype=dtype)) for o, u in ((h, up_h), (c, up_c))
                            if u is not None])
        torch.autograd.backward(outs, grads)
        for k in KEYS:
            assert max_error(t[k].grad, g_ref[k]) <= TOL[dtype], (k, up_h is None, up_c is None)
        assert max_error(c0_t.grad, g_ref["c0"]) <= TOL[dtype]

    # lstm_step, gradient through next_c only (dh is None inside the backward op)
    s = leaves(dict(x=a["x"][:, 0], h0=a["h0"], c0=c0, Wx=a["Wx"], Wh=a["Wh"], b=a["b"]), dtype, DEV)
    _, nc = ops.lstm_step(s["x"], s["h0"], s["c0"], s["Wx"], s["Wh"], s["b"])
    nc.sum().backward()
    _, _, cache = ref.lstm_step_forward(a["x"][:, 0].numpy(), a["h0"].numpy(), c0.numpy(), a["Wx"].numpy(),
                                        a["Wh"].numpy(), a["b"].numpy())
    want = ref.lstm_step_backward(np.zeros((N, H)), np.ones((N, H)), cache)
    for k, w in zip(("x", "h0", "c0", "Wx", "Wh", "b"), want):
        assert max_error(s[k].grad, w) <= TOL[dtype], k


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cuda_noncontiguous_and_expanded_inputs(cell):
    """Transposed, sliced and stride-0 inputs and an expanded upstream gradient (what
    .sum() produces) give the results of their contiguous copies."""
    dtype = torch.float64
    N, T, D, H = 3, 4, 5, 6
    G = 4 if cell == "lstm" else 1
    a, c0, _ = make_inputs(N, T, D, H, G)
    dev = {k: v.to(DEV) for k, v in a.items()}
    wide = torch.randn(H, 2 * G * H, dtype=dtype, device=DEV) / math.sqrt(H)
    odd = dict(
        x=dev["x"].transpose(0, 1).contiguous().transpose(0, 1),  # batch-major strides of a time-major tensor
        h0=dev["h0"][:1].expand(N, H),                            # stride 0 on the batch
        Wx=dev["Wx"].t().contiguous().t(),                        # column-major
        Wh=wide[:, ::2],                                          # every other column
        b=torch.tensor(0.1, dtype=dtype, device=DEV).expand(G * H),  # stride 0
    )
    assert not odd["x"].is_contiguous() and not odd["Wx"].is_contiguous() and not odd["Wh"].is_contiguous()
    odd_leaves = {k: v.detach().requires_grad_() for k, v in odd.items()}
    plain = {k: v.contiguous().detach().requires_grad_() for k, v in odd.items()}
    c0_d = c0[:1].to(DEV).expand(N, H) if cell == "lstm" else None
    h_odd = run_op(cell, odd_leaves, c0_d)
    h_plain = run_op(cell, plain, None if c0_d is None else c0_d.contiguous())
    assert max_error(h_odd, h_plain) <= TOL[dtype]
    h_odd.sum().backward()  # expanded (stride-0) upstream gradient
    h_plain.backward(torch.ones_like(h_plain))
    for k in KEYS:
        assert max_error(odd_leaves[k].grad, plain[k].grad) <= TOL[dtype], k
    # and against the reference on the same values
    vals = {k: v.detach().cpu() for k, v in plain.items()}
    h_ref, _, g_ref = reference(cell, vals, c0[:1].expand(N, H).contiguous() if cell == "lstm" else None,
                                torch.ones(N, T, H, dtype=dtype))
    assert max_error(h_odd, h_ref) <= TOL[dtype]
    for k in KEYS:
        assert max_error(odd_leaves[k].grad, g_ref[k]) <= TOL[dtype], k


# ---------------------------------------------------------------------------
# Gram matrix
def gram_reference(F, normalize):
    f = F.detach().cpu().double().reshape(F.shape[0], F.shape[1], -1)
    G = f @ f.transpose(1, 2)
    return G / (F.shape[1] * f.shape[2]) if normalize and f.shape[1] * f.shape[2] else G


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (2, 64, 32, 32), (1, 512, 16, 16), (3, 5, 1, 7)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_gram_matches_reference_and_cpu(shape, dtype, normalize):
    F = torch.randn(*shape, dtype=dtype)
    Fd = F.to(DEV).detach().requires_grad_()
    Fc = F.clone().requires_grad_()
    G_dev, G_cpu = ops.gram(Fd, normalize=normalize), ops.gram(Fc, normalize=normalize)
    assert G_dev.device.type == DEV and G_dev.dtype == dtype
    assert torch.equal(G_dev, G_dev.transpose(1, 2))  # the mirrored triangle is an exact copy
    want = gram_reference(F, normalize)
    assert max_error(G_dev, want) <= TOL[dtype] and max_error(G_dev, G_cpu) <= 2 * TOL[dtype]
    dG = torch.randn(shape[0], shape[1], shape[1], dtype=dtype)  # not symmetric
    G_dev.backward(dG.to(DEV))
    G_cpu.backward(dG)
    s = 1.0 / (shape[1] * shape[2] * shape[3]) if normalize else 1.0
    dF_ref = (s * (dG.double() + dG.double().transpose(1, 2)) @ F.double().reshape(shape[0], shape[1], -1)).reshape(shape)
    assert max_error(Fd.grad, dF_ref) <= TOL[dtype] and max_error(Fd.grad, Fc.grad) <= 2 * TOL[dtype]


@pytest.mark.parametrize("normalize", [True, False])
def test_cuda_gram_empty_noncontiguous_and_expanded(normalize):
    for shape in [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)]:
        F = torch.randn(*shape, dtype=torch.float64, device=DEV, requires_grad=True)
        G = ops.gram(F, normalize=normalize)
        assert G.shape == (shape[0], shape[1], shape[1]) and torch.count_nonzero(G) == 0
        G.sum().backward()
        assert F.grad.shape == F.shape and torch.count_nonzero(F.grad) == 0
    base = torch.randn(2, 4, 6, 5, dtype=torch.float64, device=DEV)
    for F in (base.permute(0, 3, 1, 2),                       # channels-last strides
              base[:1, :3].expand(3, 3, 6, 5),                # stride 0 on the batch
              base[:, :, ::2, 1:]):                           # sliced
        Fl = F.detach().requires_grad_()
        G = ops.gram(Fl, normalize=normalize)
        assert max_error(G, gram_reference(F, normalize)) <= 1e-10
        G.sum().backward()  # expanded upstream gradient
        Fc = F.detach().contiguous().requires_grad_()
        ops.gram(Fc, normalize=normalize).sum().backward()
        assert max_error(Fl.grad, Fc.grad) <= 1e-10


# ---------------------------------------------------------------------------
# streams and devices
def _all_ops(t, c0, F, dh):
    """Every CUDA kernel once: rnn and lstm forward and backward, gram forward and backward."""
    r = {k: (v[..., : v.shape[-1] // 4] if k in ("Wx", "Wh", "b") else v) for k, v in t.items()}
    h_r = ops.rnn(**r)
    h_l = ops.lstm(**t, c0=c0)
    G = ops.gram(F)
    grads = torch.autograd.grad((h_r * dh).sum() + (h_l * dh).sum() + G.square().sum(),
                                list(t.values()) + [c0, F])
    return [h_r, h_l, G, *grads]


def _stream_inputs(device):
    a, c0, dh = make_inputs(8, 16, 24, 32, 4)
    t = {k: v.to(device=device, dtype=torch.float32).requires_grad_() for k, v in a.items()}
    c0 = c0.to(device=device, dtype=torch.float32).requires_grad_()
    F = torch.randn(2, 64, 16, 16, generator=torch.Generator().manual_seed(3)).to(device).requires_grad_()
    return t, c0, F, dh.to(device=device, dtype=torch.float32)


def test_cuda_ops_run_on_the_current_stream():
    """Under a non-default stream every kernel and cuBLAS call must go to that stream.
    The inputs are produced on the stream behind ~25 ms of queued GPU work: a kernel
    launched on another stream would read them before they exist."""
    t, c0, F, dh = _stream_inputs("cuda")
    want = [w.detach().clone() for w in _all_ops(t, c0, F, dh)]
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda._sleep(50_000_000)
        # fresh copies made on s after the sleep (and distinct from `want`'s buffers)
        ts = {k: (v.detach() * 1.0).requires_grad_() for k, v in t.items()}
        c0s, Fs, dhs = (c0.detach() * 1.0).requires_grad_(), (F.detach() * 1.0).requires_grad_(), dh * 1.0
        got = _all_ops(ts, c0s, Fs, dhs)
        assert torch.cuda.current_stream() == s
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    for i, (g, w) in enumerate(zip(got, want)):
        assert max_error(g, w) <= 1e-5, i


@TWO_GPUS
def test_cuda_ops_on_the_second_device():
    """Tensors on cuda:1 while cuda:0 is current: results on cuda:1, equal to cuda:0's."""
    assert torch.cuda.current_device() == 0
    t0, c00, F0, dh0 = _stream_inputs("cuda:0")
    t1, c01, F1, dh1 = _stream_inputs("cuda:1")
    want = _all_ops(t0, c00, F0, dh0)
    got = _all_ops(t1, c01, F1, dh1)
    assert torch.cuda.current_device() == 0
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.device == torch.device("cuda:1"), i
        assert max_error(g, w) <= 1e-5, i
    with pytest.raises((ValueError, RuntimeError), match=r"Wh"):
        ops.lstm(t1["x"], t1["h0"], t1["Wx"], t0["Wh"], t1["b"])


def test_cuda_mixed_devices_is_a_clear_error():
    a, _, _ = make_inputs(3, 4, 5, 6, 4)
    t = {k: v.float().to(DEV) for k, v in a.items()}
    t["Wh"] = t["Wh"].to("meta" if DEV == "cpu" else "cpu")
    with pytest.raises((ValueError, RuntimeError), match=r"Wh"):
        ops.lstm(**t)
    with pytest.raises((ValueError, RuntimeError), match=r"grad|features"):
        torch.ops.a3ext.gram_backward(torch.zeros(1, 3, 3, device="meta" if DEV == "cpu" else "cpu"),
                                      torch.zeros(1, 3, 2, 2, device=DEV), True)


# ---------------------------------------------------------------------------
# opcheck (schema, fake kernels, autograd registration) and gradcheck on CUDA
def test_cuda_opcheck_and_gradcheck():
    dt = torch.float64
    a_r, _, _ = make_inputs(3, 4, 5, 6, 1)
    a_l, c0, _ = make_inputs(3, 4, 5, 6, 4)
    r, l = leaves(a_r, dt, DEV), leaves(a_l, dt, DEV)
    c0 = c0.to(DEV).detach().requires_grad_()
    F = torch.randn(2, 5, 3, 4, dtype=dt, device=DEV, requires_grad=True)
    opcheck = torch.library.opcheck
    opcheck(torch.ops.a3ext.rnn_forward.default, tuple(r[k] for k in KEYS))
    opcheck(torch.ops.a3ext.lstm_forward.default, (l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"]))
    for normalize in (True, False):
        opcheck(torch.ops.a3ext.gram_forward.default, (F, normalize))
    # the backward ops
    with torch.no_grad():
        h = ops.rnn(**r)
        hl, c, gates = torch.ops.a3ext.lstm_forward(l["x"], l["h0"], c0, l["Wx"], l["Wh"], l["b"])
    dh, dc = torch.randn_like(h), torch.randn_like(c)
    det = {k: v.detach() for k, v in r.items()}
    opcheck(torch.ops.a3ext.rnn_backward.default, (dh, det["x"], det["h0"], det["Wx"], det["Wh"], h))
    detl = {k: v.detach() for k, v in l.items()}
    args = (detl["x"], detl["h0"], c0.detach(), detl["Wx"], detl["Wh"], hl, c, gates)
    for up in ((dh, dc), (dh, None), (None, dc), (None, None)):
        opcheck(torch.ops.a3ext.lstm_backward.default, up + args)
    opcheck(torch.ops.a3ext.gram_backward.default, (torch.randn(2, 5, 5, dtype=dt, device=DEV), F.detach(), True))
    assert torch.autograd.gradcheck(ops.rnn, tuple(r[k] for k in KEYS))
    assert torch.autograd.gradcheck(ops.lstm, tuple(l[k] for k in KEYS) + (c0,))
    assert torch.autograd.gradcheck(lambda f: ops.gram(f, normalize=False), (F,))
    assert torch.autograd.gradcheck(ops.gram, (F,))


# ---------------------------------------------------------------------------
# a captioning model on CUDA (scripts/gpu_check.sh runs this as its own step)
@pytest.fixture(scope="module")
def tiny_caption_data(tmp_path_factory):
    from a3ext.captioning import data as D, synthetic as S

    base = tmp_path_factory.mktemp("cap") / "synthetic"
    S.make_dataset(base, num_train=120, num_val=20, seed=0, features="pixels", pca_dim=64, save_images=False)
    return D.load_coco_data(base)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_cuda_captioning_trains_and_samples(tiny_caption_data, cell):
    """A CaptioningRNN on CUDA: its loss equals the CPU model's, CaptioningSolver trains
    it (with BLEU evaluation, which decodes), and greedy decoding and beam search run
    on CUDA and agree with the CPU model."""
    from a3ext.captioning import CaptioningRNN, CaptioningSolver

    data = tiny_caption_data
    torch.manual_seed(0)
    model = CaptioningRNN(data["word_to_idx"], data["train_features"].shape[1], 16, 24, cell).to(DEV)
    assert all(p.device.type == DEV for p in model.parameters())
    feats = torch.as_tensor(np.asarray(data["train_features"])[np.asarray(data["train_image_idxs"])[:16]])
    caps = torch.as_tensor(np.asarray(data["train_captions"])[:16].astype(np.int64))
    cpu_model = copy.deepcopy(model).cpu()
    loss_cpu = cpu_model.loss(feats, caps)
    loss_dev = model.loss(feats.to(DEV), caps.to(DEV))
    assert loss_dev.device.type == DEV
    assert abs(float(loss_dev) - float(loss_cpu)) <= 1e-4 * abs(float(loss_cpu))

    s = CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": 5e-3}, lr_decay=0.9,
                         batch_size=32, num_epochs=3, verbose=False, num_val_images=5, max_length=16)
    s.train()
    assert len(s.loss_history) == s.num_iterations and all(math.isfinite(v) for v in s.loss_history)
    assert np.mean(s.loss_history[-3:]) < np.mean(s.loss_history[:3])
    assert len(s.val_bleu_history) == 3 and 0.0 <= s.val_bleu_history[-1]["bleu4"] <= 1.0
    assert all(p.device.type == DEV for p in model.parameters())

    val = torch.as_tensor(np.asarray(data["val_features"])[:8])
    for f in (val, val.to(DEV)):  # features on either device
        out = model.sample(f, max_length=16)
        assert out.shape == (8, 16) and out.dtype == torch.long
        assert int(out.min()) >= 0 and int(out.max()) < model.vocab_size
        beam = model.beam_search(f, beam_size=3, max_length=16)
        assert beam.shape == (8, 16) and int(beam.min()) >= 0 and int(beam.max()) < model.vocab_size
    # the trained weights decode the same on CUDA and on the CPU, and beam search with
    # one beam is greedy decoding (float64: no argmax ties)
    m64 = copy.deepcopy(model).double()
    c64 = copy.deepcopy(model).cpu().double()
    v64 = val.double()
    greedy = m64.sample(v64.to(DEV), 16).cpu()
    assert torch.equal(greedy, c64.sample(v64, 16).cpu())
    assert torch.equal(m64.beam_search(v64.to(DEV), 1, 16).cpu(), greedy)
    assert torch.equal(m64.beam_search(v64.to(DEV), 3, 16).cpu(), c64.beam_search(v64, 3, 16).cpu())
