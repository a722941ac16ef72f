"""a3ext.ops under torch.func and higher-order autograd, against the same functions
written in plain torch ops (float64): double backward (gradgradcheck and a gradient
penalty), torch.func grad / vjp / jacrev / hessian, vmap through the ops' own
batching rules (never torch's per-sample fallback), forward mode (torch.func.jvp,
jacfwd, torch.autograd.forward_ad)."""
import contextlib
import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from a3ext import ops

DT = torch.float64
N, T, D, H = 2, 3, 3, 2
LENGTHS = torch.tensor([3, 2, 0])  # sorted (pack_lengths keeps the order), one empty sequence
ORDER, BATCH_SIZES, INDEX = ops.pack_lengths(LENGTHS, T)
B, P = len(LENGTHS), int(LENGTHS.sum())
assert ORDER.tolist() == list(range(B))


# ---------------------------------------------------------------------------
# Plain-torch references, written independently of a3ext.ops (gate order i, f, o, g)
def rnn_ref(x, h0, Wx, Wh, b):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ Wx + h @ Wh + b)
        hs.append(h)
    return torch.stack(hs, 1)


def lstm_ref(x, h0, c0, Wx, Wh, b):
    """-> (h, c), every hidden and cell state."""
    n_hidden = h0.shape[1]
    h, c, hs, cs = h0, c0, [], []
    for t in range(x.shape[1]):
        a = x[:, t] @ Wx + h @ Wh + b
        i, f, o, g = (a[:, k * n_hidden:(k + 1) * n_hidden] for k in range(4))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1)


def unpack(xp):
    """Packed rows (P, F) -> the padded batch (B, T, F), zeros past each length."""
    return xp.new_zeros(B * T, xp.shape[1]).index_copy(0, INDEX, xp).reshape(B, T, -1)


def repack(h):
    return h.reshape(B * T, -1)[INDEX]


def gram_ref(F, normalize=True):
    G = torch.einsum("nchw,ndhw->ncd", F, F)
    return G / (F.shape[1] * F.shape[2] * F.shape[3]) if normalize else G


# ---------------------------------------------------------------------------
# Every public op (and the dispatcher ops, which share the autograd formula) as
# a function of tensors only: name -> (op, reference, argument shapes)
SEQ = {"x": (N, T, D), "h0": (N, H), "c0": (N, H)}
PACKED = {"x": (P, D), "h0": (B, H), "c0": (B, H)}


def _weights(gates):
    return [(D, gates * H), (H, gates * H), (gates * H,)]


CASES = {
    "rnn": (ops.rnn, rnn_ref, [SEQ["x"], SEQ["h0"], *_weights(1)]),
    "rnn_step": (ops.rnn_step, lambda x, *a: rnn_ref(x[:, None], *a)[:, 0], [(N, D), SEQ["h0"], *_weights(1)]),
    "lstm": (lambda x, h0, c0, *w: ops.lstm(x, h0, *w, c0), lambda *a: lstm_ref(*a)[0],
             [SEQ["x"], SEQ["h0"], SEQ["c0"], *_weights(4)]),
    "lstm_c0_none": (ops.lstm, lambda x, h0, *w: lstm_ref(x, h0, torch.zeros_like(h0), *w)[0],
                     [SEQ["x"], SEQ["h0"], *_weights(4)]),
    "lstm_step": (ops.lstm_step, lambda x, *a: tuple(o[:, 0] for o in lstm_ref(x[:, None], *a)),
                  [(N, D), SEQ["h0"], SEQ["c0"], *_weights(4)]),
    "rnn_packed": (lambda x, *a: ops.rnn_packed(x, BATCH_SIZES, *a),
                   lambda x, *a: repack(rnn_ref(unpack(x), *a)), [PACKED["x"], PACKED["h0"], *_weights(1)]),
    "lstm_packed": (lambda x, h0, c0, *w: ops.lstm_packed(x, BATCH_SIZES, h0, *w, c0),
                    lambda x, *a: repack(lstm_ref(unpack(x), *a)[0]),
                    [PACKED["x"], PACKED["h0"], PACKED["c0"], *_weights(4)]),
    "gram": (ops.gram, gram_ref, [(2, 3, 2, 2)]),
    "gram_unnormalized": (lambda f: ops.gram(f, False), lambda f: gram_ref(f, False), [(2, 3, 2, 2)]),
}
DISPATCHER_CASES = {
    "a3ext::rnn_forward": (torch.ops.a3ext.rnn_forward, CASES["rnn"][2]),
    "a3ext::lstm_forward": (lambda *a: torch.ops.a3ext.lstm_forward(*a)[:2], CASES["lstm"][2]),
    "a3ext::rnn_packed_forward": (lambda x, *a: torch.ops.a3ext.rnn_packed_forward(x, BATCH_SIZES, *a),
                                  CASES["rnn_packed"][2]),
    "a3ext::lstm_packed_forward": (lambda x, *a: torch.ops.a3ext.lstm_packed_forward(x, BATCH_SIZES, *a)[:2],
                                   CASES["lstm_packed"][2]),
    "a3ext::gram_forward": (torch.ops.a3ext.gram_forward, CASES["gram"][2]),
}
SEQUENCE_CASES = [name for name in CASES if not name.startswith("gram")]


def make_args(shapes, batch=None, requires_grad=False, seed=0):
    """Random float64 arguments (scaled so the gates are not saturated); with batch,
    each gets a leading vmapped dimension of that size."""
    g = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    return tuple((0.6 * torch.randn(*lead, *s, generator=g, dtype=DT)).requires_grad_(requires_grad)
                 for s in shapes)


def as_tuple(out):
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def scalar(out):
    """A nonlinear scalar of the op's output(s), so second derivatives are not trivial."""
    return sum((o.sin() * (1 + o)).sum() for o in as_tuple(out))


def assert_all_close(actual, expected):
    actual, expected = as_tuple(actual), as_tuple(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-11)


@contextlib.contextmanager
def no_vmap_fallback():
    """Turn torch's per-sample vmap fallback into an error (it normally warns,
    through C++'s TORCH_WARN on stderr, "performance drop ... batching rule"), and
    record Python warnings: an op that runs here has a batching rule of its own."""
    enabled = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        assert not [w for w in caught if "batching rule" in str(w.message)]
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(enabled)



# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_references_match_the_ops(name, backend):
    op, ref, shapes = CASES[name]
    args = make_args(shapes)
    assert_all_close(op(*args), ref(*args))


def _gradgradcheck(op, args):
    """gradgradcheck, and no backward op run under autograd without a formula
    (torch's "autograd kernel was not registered ... silently incorrect" warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.autograd.gradgradcheck(op, args)
    assert not [w for w in caught if "autograd kernel was not registered" in str(w.message)]


@pytest.mark.parametrize("name", CASES)
def test_gradgradcheck(name, backend):
    op, _, shapes = CASES[name]
    _gradgradcheck(op, make_args(shapes, requires_grad=True))


@pytest.mark.parametrize("name", CASES)
def test_torch_checks_every_mode(name):
    """torch's own checker: forward mode, batched (vmapped) gradients, forward
    over reverse, all against finite differences."""
    op, _, shapes = CASES[name]
    args = make_args(shapes, requires_grad=True)
    assert torch.autograd.gradcheck(op, args, check_forward_ad=True, check_batched_grad=True,
                                    check_batched_forward_grad=True)
    assert torch.autograd.gradgradcheck(op, args, check_fwd_over_rev=True, check_batched_grad=True)


@pytest.mark.parametrize("name", DISPATCHER_CASES)
def test_gradgradcheck_dispatcher_ops(name):
    op, shapes = DISPATCHER_CASES[name]
    _gradgradcheck(op, make_args(shapes, requires_grad=True))


@pytest.mark.parametrize("name", CASES)
def test_gradient_penalty_matches_composition(name):
    """Double backward through the op, as a gradient penalty or a Hessian-vector
    product needs it (create_graph=True), equals plain torch."""
    op, ref, shapes = CASES[name]
    args = make_args(shapes, requires_grad=True)

    def penalty_grads(f):
        g = torch.autograd.grad(scalar(f(*args)), args, create_graph=True)
        return torch.autograd.grad(sum((gi ** 2).sum() for gi in g), args)

    assert_all_close(penalty_grads(op), penalty_grads(ref))


@pytest.mark.parametrize("name", CASES)
def test_func_grad_vjp_jacrev(name, backend):
    op, ref, shapes = CASES[name]
    args = make_args(shapes)
    every = tuple(range(len(args)))
    assert_all_close(torch.func.grad(lambda *a: scalar(op(*a)), argnums=every)(*args),
                     torch.func.grad(lambda *a: scalar(ref(*a)), argnums=every)(*args))
    out, pullback = torch.func.vjp(op, *args)
    out_ref, pullback_ref = torch.func.vjp(ref, *args)
    assert_all_close(out, out_ref)
    cotangent = tuple(torch.randn_like(o) for o in as_tuple(out))
    cotangent = cotangent[0] if isinstance(out, torch.Tensor) else cotangent
    assert_all_close(pullback(cotangent), pullback_ref(cotangent))
    jac, jac_ref = torch.func.jacrev(op, argnums=every)(*args), torch.func.jacrev(ref, argnums=every)(*args)
    for j, j_ref in zip(as_tuple(jac), as_tuple(jac_ref)):  # one tuple of Jacobians per output
        assert_all_close(j, j_ref)


@pytest.mark.parametrize("name", CASES)
def test_func_hessian(name):
    """jacfwd(jacrev): forward mode over the op's first derivative."""
    op, ref, shapes = CASES[name]
    args = make_args(shapes)
    hess = torch.func.hessian(lambda x: scalar(op(x, *args[1:])))(args[0])
    assert_all_close(hess, torch.func.hessian(lambda x: scalar(ref(x, *args[1:])))(args[0]))


def _stack_over_slices(f, dims, batched):
    K = next(a.shape[d] for a, d in zip(batched, dims) if d is not None)
    outs = [as_tuple(f(*(a if d is None else a.select(d, k) for a, d in zip(batched, dims)))) for k in range(K)]
    return tuple(torch.stack(o) for o in zip(*outs))


@pytest.mark.parametrize("name", CASES)
def test_vmap_has_a_batching_rule(name, capfd):
    """vmap over the data (folded into the op's batch), over the initial states, and
    over everything (an ensemble of weights: one op call per slice), without ever
    reaching torch's per-sample fallback; and per-sample gradients (vmap of grad)."""
    op, ref, shapes = CASES[name]
    unbatched = make_args(shapes)
    batched = make_args(shapes, batch=3, seed=1)
    patterns = [(0,) + (None,) * (len(shapes) - 1), (0,) * len(shapes)]
    if name in SEQUENCE_CASES:
        patterns.append((None, 0) + (None,) * (len(shapes) - 2))
    with no_vmap_fallback():
        for dims in patterns:
            args = [b if d == 0 else u for b, u, d in zip(batched, unbatched, dims)]
            assert_all_close(torch.vmap(op, in_dims=dims)(*args), _stack_over_slices(ref, dims, args))
            every = tuple(range(len(args)))
            per_sample = torch.vmap(torch.func.grad(lambda *a: scalar(op(*a)), argnums=every), in_dims=dims)(*args)
            expected = _stack_over_slices(torch.func.grad(lambda *a: scalar(ref(*a)), argnums=every), dims, args)
            for p, e in zip(per_sample, expected):  # an unbatched argument's gradient is batched too
                assert_all_close(p, e)
    assert "batching rule" not in capfd.readouterr().err


def test_the_fallback_check_catches_an_op_without_a_batching_rule():
    """no_vmap_fallback is not vacuous: the bare dispatcher op has no batching rule."""
    features = make_args(CASES["gram"][2], batch=2)[0]
    with pytest.raises(RuntimeError, match="vmap fallback"), no_vmap_fallback():
        torch.vmap(torch.ops.a3ext.gram_forward)(features)


@pytest.mark.parametrize("name", CASES)
def test_forward_mode(name, backend):
    """torch.func.jvp, jacfwd and torch.autograd.forward_ad give the right tangent."""
    op, ref, shapes = CASES[name]
    args = make_args(shapes)
    tangents = make_args(shapes, seed=2)
    out, tangent = torch.func.jvp(op, args, tangents)
    out_ref, tangent_ref = torch.func.jvp(ref, args, tangents)
    assert_all_close(out, out_ref)
    assert_all_close(tangent, tangent_ref)
    assert_all_close(torch.func.jacfwd(op)(*args), torch.func.jacfwd(ref)(*args))
    with fwAD.dual_level():
        duals = [fwAD.make_dual(a, t) for a, t in zip(args, tangents)]
        dual_out = as_tuple(op(*duals))
        tangent_fw = tuple(fwAD.unpack_dual(o).tangent for o in dual_out)
    assert all(t is not None for t in tangent_fw)
    assert_all_close(tangent_fw, tangent_ref)


@pytest.mark.parametrize("name", CASES)
def test_grad_of_vmap(name):
    """The batching rule applies the op's Function again, so a transform outside
    the vmap (torch.func.grad, or plain .backward()) still differentiates it."""
    op, ref, shapes = CASES[name]
    unbatched, batched = make_args(shapes), make_args(shapes, batch=3, seed=1)
    every = tuple(range(len(shapes)))
    with no_vmap_fallback():
        for dims in [(0,) + (None,) * (len(shapes) - 1), (0,) * len(shapes)]:
            args = [b if d == 0 else u for b, u, d in zip(batched, unbatched, dims)]
            grads = torch.func.grad(lambda *a: scalar(torch.vmap(op, in_dims=dims)(*a)), argnums=every)(*args)
            assert_all_close(grads, torch.func.grad(lambda *a: scalar(torch.vmap(ref, in_dims=dims)(*a)),
                                                    argnums=every)(*args))
            leaves = [a.detach().requires_grad_() for a in args]
            scalar(torch.vmap(op, in_dims=dims)(*leaves)).backward()
            assert_all_close(tuple(a.grad for a in leaves), grads)


@pytest.mark.parametrize("name", DISPATCHER_CASES)
def test_dispatcher_ops_forward_mode_right_or_error(name):
    """The bare dispatcher ops: torch.autograd.forward_ad gives the right tangent
    (their autograd kernel applies the op's Function); torch.func transforms stop
    with an error naming the op and pointing to the a3ext.ops function."""
    op, shapes = DISPATCHER_CASES[name]
    public = CASES[name.split("::")[1].replace("_forward", "")]
    args, tangents = make_args(shapes), make_args(shapes, seed=2)
    with fwAD.dual_level():
        dual_out = as_tuple(op(*(fwAD.make_dual(a, t) for a, t in zip(args, tangents))))
        tangent_fw = tuple(fwAD.unpack_dual(o).tangent for o in dual_out)
    assert_all_close(tangent_fw[0], as_tuple(torch.func.jvp(public[1], args, tangents)[1])[0])
    with pytest.raises(RuntimeError, match=rf"torch.ops.{name.replace('::', '.')}: torch.func .* a3ext.ops"):
        torch.func.jvp(op, args, tangents)
    with pytest.raises(RuntimeError, match=rf"torch.ops.{name.replace('::', '.')}: torch.func .* a3ext.ops"):
        torch.func.grad(lambda *a: scalar(op(*a)))(*args)


def test_compiled_double_backward_is_an_error_not_a_wrong_number():
    """torch.compile runs the first derivative; AOTAutograd refuses a second one."""
    features = make_args(CASES["gram"][2], requires_grad=True)[0]
    compiled = torch.compile(lambda f: scalar(ops.gram(f)), fullgraph=True)
    (g,) = torch.autograd.grad(compiled(features), features, create_graph=True)
    assert_all_close(g, torch.autograd.grad(scalar(gram_ref(features)), features)[0])
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(g.sum(), features)
