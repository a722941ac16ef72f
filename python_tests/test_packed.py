"""The packed-sequence ops (a3ext.ops.rnn_packed / lstm_packed, pack_lengths) against
the float64 numpy reference run on the padded batch, opcheck, gradcheck, torch.compile
and bad inputs; and the captioning loss that uses them against the padded composition."""
import numpy as np
import pytest
import torch

import a3ext  # noqa: F401
from a3ext import ops, reference as ref
from a3ext.captioning.layers import temporal_affine, temporal_softmax_loss, word_embedding
from a3ext.captioning.model import CaptioningRNN

from test_ops import TOL, make_inputs, np64, rel_error

# (N, T, D, H, lengths): zero-length sequences, unsorted lengths, all full, and a
# problem large enough for the multi-thread paths and the oneDNN engine.
CASES = [
    (1, 1, 1, 1, [1]),
    (4, 5, 3, 2, [2, 5, 0, 3]),
    (3, 4, 6, 5, [4, 4, 4]),
    (6, 7, 5, 8, [1, 7, 7, 0, 3, 2]),
    (50, 12, 33, 96, None),  # random lengths in [0, 12]
]


def _lengths(N, T, lengths):
    if lengths is not None:
        return torch.tensor(lengths)
    g = torch.Generator().manual_seed(N * T)
    return torch.randint(0, T + 1, (N,), generator=g)


def _pack(t, index):
    N, T = t.shape[:2]
    return t.reshape(N * T, *t.shape[2:])[index]



def test_pack_lengths_layout():
    order, bs, index = ops.pack_lengths(torch.tensor([2, 3, 0, 3]), T=4)
    assert order.tolist() == [1, 3, 0, 2]  # non-increasing length, stable
    assert bs.tolist() == [3, 3, 2] and bs.dtype == torch.int64
    # step 0: sequences 1, 3, 0; step 1: 1, 3, 0; step 2: 1, 3 (flat index n * T + t)
    assert index.tolist() == [4, 12, 0, 5, 13, 1, 6, 14]
    order, bs, index = ops.pack_lengths(torch.zeros(3, dtype=torch.long))
    assert bs.numel() == 0 and index.numel() == 0
    with pytest.raises(ValueError, match=r"lengths must be in \[0, T = 2\]"):
        ops.pack_lengths(torch.tensor([1, 3]), T=2)
    with pytest.raises(ValueError, match="lengths of shape"):
        ops.pack_lengths(torch.ones(2, 2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", CASES, ids=[str(c[:4]) for c in CASES])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_packed_matches_padded_reference(cell, case, dtype, backend):
    """Packed outputs equal the reference on the padded batch at every valid position;
    gradients equal the padded reference's with the upstream gradient zero on padding."""
    N, T, D, H, lengths = case
    lengths = _lengths(N, T, lengths)
    tol = TOL[dtype]
    gates = 4 if cell == "lstm" else 1
    # weights scaled so the large case's recurrence stays out of chaotic saturation
    a = make_inputs(N, T, D, H, gates, dtype, requires_grad=True, scale=0.5 if N < 50 else 0.1)
    c0 = (0.5 * torch.randn(N, H, dtype=torch.float64)).to(dtype).requires_grad_()
    order, bs, index = ops.pack_lengths(lengths, T)
    xp = _pack(a["x"], index)
    h0s, c0s = a["h0"][order], c0[order]
    if cell == "rnn":
        h = ops.rnn_packed(xp, bs, h0s, a["Wx"], a["Wh"], a["b"])
        h_ref, cache = ref.rnn_forward(*(np64(a[k]) for k in ("x", "h0", "Wx", "Wh", "b")))
    else:
        h = ops.lstm_packed(xp, bs, h0s, a["Wx"], a["Wh"], a["b"], c0=c0s)
        h_ref, cache = ref.lstm_forward_c0(*(np64(t) for t in (a["x"], a["h0"], c0, a["Wx"], a["Wh"], a["b"])))
    P = int(lengths.sum())
    assert h.shape == (P, H) and h.dtype == dtype
    assert rel_error(np64(h), h_ref.reshape(N * T, H)[index.numpy()], dtype) <= tol
    dh = torch.randn(P, H, dtype=torch.float64).to(dtype)
    h.backward(dh)
    dh_pad = np.zeros((N * T, H))
    dh_pad[index.numpy()] = np64(dh)
    dh_pad = dh_pad.reshape(N, T, H)
    if cell == "rnn":
        grads = dict(zip(("x", "h0", "Wx", "Wh", "b"), ref.rnn_backward(dh_pad, cache)))
    else:
        grads = dict(zip(("x", "h0", "c0", "Wx", "Wh", "b"), ref.lstm_backward_full(dh_pad, cache)))
        assert rel_error(np64(c0.grad), grads["c0"], dtype) <= tol, "c0"
    for name in ("x", "h0", "Wx", "Wh", "b"):
        assert rel_error(np64(a[name].grad), grads[name], dtype) <= tol, name


def test_lstm_packed_gradient_through_c_only():
    """The backward op with dh = None (only the cell states are used)."""
    dt = torch.float64
    a = make_inputs(3, 4, 2, 3, 4, dt, requires_grad=True)
    order, bs, index = ops.pack_lengths(torch.tensor([4, 1, 3]), 4)
    c0 = torch.zeros(3, 3, dtype=dt)
    _, c, _ = torch.ops.a3ext.lstm_packed_forward(_pack(a["x"], index), bs, a["h0"][order], c0, a["Wx"], a["Wh"], a["b"])
    c.sum().backward()
    _, cache = ref.lstm_forward(*(np64(a[k]) for k in ("x", "h0", "Wx", "Wh", "b")))
    dc = np.zeros((12, 3))
    dc[index.numpy()] = 1.0
    dx, dh0, _, dWx, dWh, db = ref.lstm_backward_full(np.zeros((3, 4, 3)), cache, dc.reshape(3, 4, 3))
    assert ref.rel_error(np64(a["Wh"].grad), dWh) <= 1e-10
    assert ref.rel_error(np64(a["x"].grad), dx) <= 1e-10


def _packed_args(cell, dtype=torch.float64, requires_grad=False):
    gates = 4 if cell == "lstm" else 1
    a = make_inputs(3, 4, 5, 6, gates, dtype, requires_grad=False)
    order, bs, index = ops.pack_lengths(torch.tensor([3, 4, 1]), 4)
    x = _pack(a["x"], index).detach().requires_grad_(requires_grad)
    h0 = a["h0"][order].detach().requires_grad_(requires_grad)
    w = [a[k].detach().requires_grad_(requires_grad) for k in ("Wx", "Wh", "b")]
    if cell == "rnn":
        return (x, bs, h0, *w)
    c0 = torch.randn(3, 6, dtype=dtype, requires_grad=requires_grad)
    return (x, bs, h0, c0, *w)


def test_gradcheck_packed():
    for cell, f in (("rnn", ops.rnn_packed), ("lstm", torch.ops.a3ext.lstm_packed_forward)):
        args = _packed_args(cell, requires_grad=True)
        fn = (lambda *a: f(*a)[:2]) if cell == "lstm" else f  # h and c (gates are not differentiable)
        assert torch.autograd.gradcheck(fn, args), cell


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_packed_forward_ops(requires_grad):
    torch.library.opcheck(torch.ops.a3ext.rnn_packed_forward.default, _packed_args("rnn", requires_grad=requires_grad))
    torch.library.opcheck(torch.ops.a3ext.lstm_packed_forward.default, _packed_args("lstm", requires_grad=requires_grad))
    args32 = tuple(t.float() if t.is_floating_point() else t for t in _packed_args("lstm"))
    torch.library.opcheck(torch.ops.a3ext.lstm_packed_forward.default, args32)
    # an empty batch (all lengths 0)
    x, _, h0, c0, Wx, Wh, b = _packed_args("lstm")
    torch.library.opcheck(torch.ops.a3ext.lstm_packed_forward.default,
                          (x[:0], torch.zeros(0, dtype=torch.long), h0, c0, Wx, Wh, b))


def test_opcheck_packed_backward_ops():
    x, bs, h0, Wx, Wh, b = _packed_args("rnn")
    h = ops.rnn_packed(x, bs, h0, Wx, Wh, b)
    torch.library.opcheck(torch.ops.a3ext.rnn_packed_backward.default, (torch.randn_like(h), x, bs, h0, Wx, Wh, h))
    x, bs, h0, c0, Wx, Wh, b = _packed_args("lstm")
    h, c, g = torch.ops.a3ext.lstm_packed_forward(x, bs, h0, c0, Wx, Wh, b)
    rest = (x, bs, h0, c0, Wx, Wh, h, c, g)
    for up in ((torch.randn_like(h), torch.randn_like(c)), (torch.randn_like(h), None), (None, None)):
        torch.library.opcheck(torch.ops.a3ext.lstm_packed_backward.default, up + rest)


def test_torch_compile_packed():
    x, bs, h0, Wx, Wh, b = _packed_args("lstm", torch.float32, requires_grad=True)[:3] + _packed_args(
        "lstm", torch.float32, requires_grad=True)[4:]

    def f(x, h0, Wx, Wh, b):
        return ops.lstm_packed(x, bs, h0, Wx, Wh, b).tanh().sum()

    compiled = torch.compile(f, fullgraph=True)
    out = compiled(x, h0, Wx, Wh, b)
    out.backward()
    g = Wh.grad.clone()
    Wh.grad = None
    f(x, h0, Wx, Wh, b).backward()
    assert torch.allclose(out, f(x, h0, Wx, Wh, b)) and torch.allclose(g, Wh.grad, atol=1e-6)


BAD = [
    ("unsorted", dict(batch_sizes=torch.tensor([1, 3, 2, 1])), ValueError, "non-increasing"),
    ("sum", dict(batch_sizes=torch.tensor([3, 2, 1, 1])), ValueError, r"P = sum\(batch_sizes\) = 7"),
    ("too_big", dict(batch_sizes=torch.tensor([4, 2, 1, 1])), ValueError, r"expected every batch_sizes\[t\] in \[0, B\] with B = 3 \(h0.size\(0\)\), but got batch_sizes\[0\] = 4"),
    ("bs_dtype", dict(batch_sizes=torch.tensor([3.0, 2, 2, 1])), TypeError, "batch_sizes must be a torch.int64"),
    ("bs_2d", dict(batch_sizes=torch.ones(2, 2, dtype=torch.long)), ValueError, r"batch_sizes of shape \(T,\)"),
    ("x_3d", dict(x=torch.zeros(8, 1, 5, dtype=torch.float64)), ValueError, r"packed x of shape \(P, D\)"),
    ("x_int", dict(x=torch.zeros(8, 5, dtype=torch.long)), TypeError, "x must be torch.float32 or torch.float64"),
    ("Wh_shape", dict(Wh=torch.zeros(6, 23, dtype=torch.float64)), ValueError, r"Wh of shape \(H, 4H\)"),
    ("c0_shape", dict(c0=torch.zeros(2, 6, dtype=torch.float64)), ValueError, r"c0 of shape \(B, H\)"),
    ("dtype_mix", dict(h0=torch.zeros(3, 6)), TypeError, "same dtype"),
]


@pytest.mark.parametrize("name,over,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_packed_inputs(name, over, exc, pattern):
    x, bs, h0, c0, Wx, Wh, b = _packed_args("lstm")
    args = dict(x=x, batch_sizes=bs, h0=h0, c0=c0, Wx=Wx, Wh=Wh, b=b)
    args.update(over)
    with pytest.raises(exc, match=pattern):
        torch.ops.a3ext.lstm_packed_forward(**args)
    if name in ("unsorted", "sum", "too_big"):
        return  # values of batch_sizes are only known to the real kernel
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        with pytest.raises(exc, match=pattern):
            torch.ops.a3ext.lstm_packed_forward(**args)


def _padded_loss(m, features, captions):
    """The model's loss composed from the padded ops and layers (what runs on CUDA)."""
    cin, cout = captions[:, :-1], captions[:, 1:]
    h0 = torch.addmm(m.b_proj, features, m.W_proj)
    x = word_embedding(cin, m.W_embed)
    h = (ops.rnn if m.cell_type == "rnn" else ops.lstm)(x, h0, m.Wx, m.Wh, m.b)
    return temporal_softmax_loss(temporal_affine(h, m.W_vocab, m.b_vocab), cout, cout != m._null)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_captioning_packed_loss_equals_padded(cell, dtype):
    """Realistic captions (<START> words <END> then <NULL> padding, one all-<NULL> row
    and one with a <NULL> inside): the packed loss and every gradient equal the padded
    composition's."""
    V, N, T = 40, 30, 16
    w2i = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i for i in range(3, V)}}
    torch.manual_seed(0)
    m = CaptioningRNN(w2i, 24, 16, 64, cell, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    caps = torch.randint(3, V, (N, T + 1), generator=g)
    caps[:, 0] = 1
    lengths = torch.randint(1, T, (N,), generator=g)
    caps[torch.arange(N), lengths] = 2
    caps[torch.arange(T + 1) > lengths[:, None]] = 0
    caps[3, 1:] = 0
    caps[5, 4] = 0
    feats = torch.randn(N, 24, generator=g).to(dtype)
    losses, grads = [], []
    for f in (m.loss, lambda a, b: _padded_loss(m, a, b)):
        m.zero_grad()
        loss = f(feats, caps)
        loss.backward()
        losses.append(loss.item())
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert abs(losses[0] - losses[1]) <= tol * abs(losses[1])
    for k in grads[0]:
        assert rel_error(np64(grads[0][k]), np64(grads[1][k]), torch.float32) <= tol * 10, k


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 4, 0, 5), (3, 4, 5, 0), (64, 4, 0, 256)], ids=["D0", "H0", "D0_large"])
@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_empty_feature_dimensions(cell, shape, dtype, backend):
    """D = 0 (no inputs: the recurrence runs on the bias) and H = 0 (empty states) give
    the reference's results (no crash, no oneDNN primitive error), padded and packed."""
    N, T, D, H = shape
    a = make_inputs(N, T, D, H, 4 if cell == "lstm" else 1, dtype, requires_grad=True, scale=0.1)
    f = ops.lstm if cell == "lstm" else ops.rnn
    h = f(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    h.sum().backward()
    args = [np64(a[k]) for k in ("x", "h0", "Wx", "Wh", "b")]
    h_ref, cache = (ref.lstm_forward if cell == "lstm" else ref.rnn_forward)(*args)
    assert h.shape == (N, T, H) and rel_error(np64(h), h_ref, dtype) <= TOL[dtype]
    grads = (ref.lstm_backward if cell == "lstm" else ref.rnn_backward)(np.ones((N, T, H)), cache)
    for name, g in zip(("x", "h0", "Wx", "Wh", "b"), grads):
        assert a[name].grad.shape == g.shape and rel_error(np64(a[name].grad), g, dtype) <= TOL[dtype], name
    order, bs, index = ops.pack_lengths(torch.full((N,), T), T)
    fp = ops.lstm_packed if cell == "lstm" else ops.rnn_packed
    hp = fp(_pack(a["x"].detach(), index), bs, a["h0"].detach()[order], a["Wx"].detach(), a["Wh"].detach(),
            a["b"].detach())
    assert rel_error(np64(hp), h_ref.reshape(N * T, H)[index.numpy()], dtype) <= TOL[dtype]


def test_errors_agree_between_real_and_fake_kernels_with_two_faults():
    """With two faults at once the real and the fake kernels report the same (first) one."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    f64 = torch.float64
    padded = (torch.zeros(2, 3, 4, dtype=f64), torch.zeros(5, 6, dtype=f64),  # h0: wrong N
              torch.zeros(4, 6), torch.zeros(6, 6, dtype=f64), torch.zeros(6, dtype=f64))  # Wx: wrong dtype
    x, bs, h0, Wx, Wh, b = _packed_args("rnn")
    packed = (x, torch.tensor([1, 3, 2, 2]), h0, Wx.float(), Wh, b)  # unsorted batch_sizes + wrong dtype
    for op, args in ((torch.ops.a3ext.rnn_forward, padded), (torch.ops.a3ext.rnn_packed_forward, packed)):
        with pytest.raises(TypeError, match="all inputs must have the same dtype, but Wx") as real:
            op(*args)
        with FakeTensorMode(allow_non_fake_inputs=True):
            with pytest.raises(TypeError) as fake:
                op(*args)
        assert str(real.value).splitlines()[0] == str(fake.value).splitlines()[0]


@pytest.mark.parametrize("lengths,T,exc,pattern", [
    ([1.5, 2], None, TypeError, r"a3ext.pack_lengths: lengths must have an integer dtype, but got torch.float32"),
    (torch.tensor([1.0, 2.0]), None, TypeError, r"lengths must have an integer dtype, but got torch.float32"),
    ([True, False], None, TypeError, r"lengths must have an integer dtype, but got torch.bool"),
    (torch.tensor([1 + 0j]), None, TypeError, r"lengths must have an integer dtype, but got torch.complex64"),
    (None, None, TypeError, r"lengths is required, got None"),
    ("abc", None, TypeError, r"lengths must be a 1-D tensor, array or sequence of ints, but got str"),
    (torch.tensor([1, 2], device="meta"), None, ValueError, r"lengths must hold values .* on meta"),
    ([1, 2], 2.5, TypeError, r"T must be an int, but got float 2.5"),
    ([1, 2], 3.0, TypeError, r"T must be an int, but got float 3.0"),
    ([1, 2], True, TypeError, r"T must be an int, but got bool True"),
    ([1, 2], -1, ValueError, r"T must be >= 0, but got T = -1"),
    ([1, 2], 2 ** 62, ValueError, r"expected B \* T < 2\*\*63 .* but got B = 2 and T = 4611686018427387904"),
])
def test_pack_lengths_integers_and_ranges_only(lengths, T, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ops.pack_lengths(lengths, T)


def test_pack_lengths_accepts_integer_inputs():
    for lengths, T in (([], None), (np.array([3, 1]), np.int64(4)), (torch.tensor([3, 1], dtype=torch.int32), 4)):
        order, bs, index = ops.pack_lengths(lengths, T)
        assert bs.dtype == torch.int64 and index.dtype == torch.int64


def test_batch_sizes_sum_overflow_and_huge_batch():
    """sum(batch_sizes) = 4 * 2**62 wraps to 0 = P in int64: refused. A batch of 2**40
    sequences with H = 0 needs no bookkeeping by B."""
    e = torch.empty
    B = 2 ** 62
    with pytest.raises(ValueError, match=r"a3ext.rnn_packed: expected packed x with P = sum\(batch_sizes\) rows, "
                                         r"but sum\(batch_sizes\) overflows int64"):
        ops.rnn_packed(e(0, 4), torch.tensor([B] * 4), e(B, 0), e(4, 0), e(0, 0), e(0))
    n = 2 ** 40
    h = ops.lstm_packed(e(n, 0), torch.tensor([n]), e(n, 0), e(0, 0), e(0, 0), e(0))
    assert h.shape == (n, 0)
