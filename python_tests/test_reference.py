"""Tests of the float64 numpy reference ``a3ext.reference``.

The reference is the ground truth for the C++ ops, so it is checked here on
its own: against the numbers the assignment's notebook publishes, against
centered-difference numerical gradients (as the assignment checks every
backward), against hand-computed cases, and against torch's own
``nn.RNN`` / ``nn.LSTM`` (gate order converted) in float64.
"""

import warnings

import numpy as np
import pytest

from a3ext import reference as ref

# Centered differences in float64: truncation error ~ h^2, round-off ~ eps/h.
H_STEP = 1e-5
GRAD_TOL = 1e-7


def _rng(seed):
    return np.random.default_rng(seed)


def _numeric_grads(fwd, args, dout, h=H_STEP):
    """Numerical gradient of ``sum(fwd(*args) * dout)`` w.r.t. every arg."""
    grads = []
    for k in range(len(args)):
        def f(v, k=k):
            a = list(args)
            a[k] = v
            return fwd(*a)

        grads.append(ref.eval_numerical_gradient_array(f, args[k], dout, h=h))
    return grads


def _assert_grads_close(analytic, numeric, names, tol=GRAD_TOL):
    assert len(analytic) == len(numeric) == len(names)
    for name, a, n in zip(names, analytic, numeric):
        assert a.shape == n.shape, (name, a.shape, n.shape)
        err = ref.rel_error(a, n)
        assert err < tol, f"d{name}: rel_error {err:.3e} >= {tol}"


# Shapes (N, T, D, H): N=1, T=1, H=1, D != H, odd sizes.
SEQ_SHAPES = [
    (1, 1, 1, 1),
    (2, 3, 4, 5),
    (3, 2, 5, 3),
    (1, 4, 3, 2),
    (2, 1, 3, 7),
    (3, 5, 2, 1),
]


def _rnn_params(rng, N, T, D, H, gates=1):
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, gates * H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, gates * H)) / np.sqrt(H)
    b = 0.5 * rng.standard_normal(gates * H)
    return x, h0, Wx, Wh, b


# ---------------------------------------------------------------------------
# Numbers published by the assignment's notebook
# ---------------------------------------------------------------------------

def test_published_rnn_step_forward():
    N, D, H = 3, 10, 4
    x = np.linspace(-0.4, 0.7, num=N * D).reshape(N, D)
    prev_h = np.linspace(-0.2, 0.5, num=N * H).reshape(N, H)
    Wx = np.linspace(-0.1, 0.9, num=D * H).reshape(D, H)
    Wh = np.linspace(-0.3, 0.7, num=H * H).reshape(H, H)
    b = np.linspace(-0.2, 0.4, num=H)
    next_h, _ = ref.rnn_step_forward(x, prev_h, Wx, Wh, b)
    expected = np.asarray([
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353]])
    assert ref.rel_error(next_h, expected) < 1e-7


def test_published_rnn_forward():
    N, T, D, H = 2, 3, 4, 5
    x = np.linspace(-0.1, 0.3, num=N * T * D).reshape(N, T, D)
    h0 = np.linspace(-0.3, 0.1, num=N * H).reshape(N, H)
    Wx = np.linspace(-0.2, 0.4, num=D * H).reshape(D, H)
    Wh = np.linspace(-0.4, 0.1, num=H * H).reshape(H, H)
    b = np.linspace(-0.7, 0.1, num=H)
    h, _ = ref.rnn_forward(x, h0, Wx, Wh, b)
    expected = np.asarray([
        [[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
         [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
         [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
        [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
         [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
         [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]])
    assert ref.rel_error(h, expected) < 1e-7


def test_published_lstm_step_forward():
    N, D, H = 3, 4, 5
    x = np.linspace(-0.4, 1.2, num=N * D).reshape(N, D)
    prev_h = np.linspace(-0.3, 0.7, num=N * H).reshape(N, H)
    prev_c = np.linspace(-0.4, 0.9, num=N * H).reshape(N, H)
    Wx = np.linspace(-2.1, 1.3, num=4 * D * H).reshape(D, 4 * H)
    Wh = np.linspace(-0.7, 2.2, num=4 * H * H).reshape(H, 4 * H)
    b = np.linspace(0.3, 0.7, num=4 * H)
    next_h, next_c, _ = ref.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    expected_h = np.asarray([
        [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
        [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
        [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]])
    expected_c = np.asarray([
        [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
        [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
        [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]])
    assert ref.rel_error(next_h, expected_h) < 1e-7
    assert ref.rel_error(next_c, expected_c) < 1e-7


def test_published_lstm_forward():
    N, D, H, T = 2, 5, 4, 3
    x = np.linspace(-0.4, 0.6, num=N * T * D).reshape(N, T, D)
    h0 = np.linspace(-0.4, 0.8, num=N * H).reshape(N, H)
    Wx = np.linspace(-0.2, 0.9, num=4 * D * H).reshape(D, 4 * H)
    Wh = np.linspace(-0.3, 0.6, num=4 * H * H).reshape(H, 4 * H)
    b = np.linspace(0.2, 0.7, num=4 * H)
    h, _ = ref.lstm_forward(x, h0, Wx, Wh, b)
    expected = np.asarray([
        [[0.01764008, 0.01823233, 0.01882671, 0.0194232],
         [0.11287491, 0.12146228, 0.13018446, 0.13902939],
         [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
        [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
         [0.6704845, 0.69350089, 0.71486014, 0.7346449],
         [0.81733511, 0.83677871, 0.85403753, 0.86935314]]])
    # The notebook reports ~8.6e-8 here too: the 8-decimal rounding of the
    # small entries (0.0176...) is what limits it.
    assert ref.rel_error(h, expected) < 1e-7


def test_published_word_embedding_forward():
    N, T, V, D = 2, 4, 5, 3
    x = np.asarray([[0, 3, 1, 2], [2, 1, 0, 3]])
    W = np.linspace(0, 1, num=V * D).reshape(V, D)
    out, _ = ref.word_embedding_forward(x, W)
    expected = np.asarray([
        [[0., 0.07142857, 0.14285714],
         [0.64285714, 0.71428571, 0.78571429],
         [0.21428571, 0.28571429, 0.35714286],
         [0.42857143, 0.5, 0.57142857]],
        [[0.42857143, 0.5, 0.57142857],
         [0.21428571, 0.28571429, 0.35714286],
         [0., 0.07142857, 0.14285714],
         [0.64285714, 0.71428571, 0.78571429]]])
    assert out.shape == (N, T, D)
    assert ref.rel_error(out, expected) < 1e-7


# ---------------------------------------------------------------------------
# Every backward against its numerical gradient
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SEQ_SHAPES)
def test_rnn_step_backward_numeric(shape):
    N, _, D, H = shape
    rng = _rng(1)
    x = rng.standard_normal((N, D))
    prev_h = rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, H)) / np.sqrt(H)
    b = 0.5 * rng.standard_normal(H)
    dnext_h = rng.standard_normal((N, H))
    _, cache = ref.rnn_step_forward(x, prev_h, Wx, Wh, b)
    analytic = ref.rnn_step_backward(dnext_h, cache)
    numeric = _numeric_grads(
        lambda *a: ref.rnn_step_forward(*a)[0], [x, prev_h, Wx, Wh, b], dnext_h)
    _assert_grads_close(analytic, numeric, ["x", "prev_h", "Wx", "Wh", "b"])


@pytest.mark.parametrize("shape", SEQ_SHAPES)
def test_rnn_backward_numeric(shape):
    N, T, D, H = shape
    rng = _rng(2)
    args = list(_rnn_params(rng, N, T, D, H))
    dh = rng.standard_normal((N, T, H))
    h, cache = ref.rnn_forward(*args)
    assert h.shape == (N, T, H)
    analytic = ref.rnn_backward(dh, cache)
    numeric = _numeric_grads(lambda *a: ref.rnn_forward(*a)[0], args, dh)
    _assert_grads_close(analytic, numeric, ["x", "h0", "Wx", "Wh", "b"])


@pytest.mark.parametrize("shape", SEQ_SHAPES)
def test_lstm_step_backward_numeric(shape):
    N, _, D, H = shape
    rng = _rng(3)
    x = rng.standard_normal((N, D))
    prev_h = rng.standard_normal((N, H))
    prev_c = rng.standard_normal((N, H))
    Wx = rng.standard_normal((D, 4 * H)) / np.sqrt(D)
    Wh = rng.standard_normal((H, 4 * H)) / np.sqrt(H)
    b = 0.5 * rng.standard_normal(4 * H)
    dnext_h = rng.standard_normal((N, H))
    dnext_c = rng.standard_normal((N, H))
    _, _, cache = ref.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    analytic = ref.lstm_step_backward(dnext_h, dnext_c, cache)

    def both(*a):
        next_h, next_c, _ = ref.lstm_step_forward(*a)
        return np.concatenate((next_h, next_c), axis=1)

    numeric = _numeric_grads(both, [x, prev_h, prev_c, Wx, Wh, b],
                             np.concatenate((dnext_h, dnext_c), axis=1))
    _assert_grads_close(analytic, numeric,
                        ["x", "prev_h", "prev_c", "Wx", "Wh", "b"])


@pytest.mark.parametrize("shape", SEQ_SHAPES)
def test_lstm_backward_numeric(shape):
    N, T, D, H = shape
    rng = _rng(4)
    args = list(_rnn_params(rng, N, T, D, H, gates=4))
    dh = rng.standard_normal((N, T, H))
    h, cache = ref.lstm_forward(*args)
    assert h.shape == (N, T, H)
    analytic = ref.lstm_backward(dh, cache)
    assert len(analytic) == 5
    numeric = _numeric_grads(lambda *a: ref.lstm_forward(*a)[0], args, dh)
    _assert_grads_close(analytic, numeric, ["x", "h0", "Wx", "Wh", "b"])


@pytest.mark.parametrize("shape", SEQ_SHAPES)
def test_lstm_backward_full_with_dc_numeric(shape):
    """Upstream gradients on every h and every c, and dc0, vs numeric."""
    N, T, D, H = shape
    rng = _rng(5)
    x, h0, Wx, Wh, b = _rnn_params(rng, N, T, D, H, gates=4)
    c0 = rng.standard_normal((N, H))
    args = [x, h0, c0, Wx, Wh, b]
    dh = rng.standard_normal((N, T, H))
    dc = rng.standard_normal((N, T, H))
    h, cache = ref.lstm_forward_c0(*args)
    assert cache["c"].shape == (N, T, H)
    analytic = ref.lstm_backward_full(dh, cache, dc=dc)
    assert len(analytic) == 6

    def h_and_c(*a):
        h, cache = ref.lstm_forward_c0(*a)
        return np.concatenate((h, cache["c"]), axis=2)

    numeric = _numeric_grads(h_and_c, args, np.concatenate((dh, dc), axis=2))
    _assert_grads_close(analytic, numeric, ["x", "h0", "c0", "Wx", "Wh", "b"])


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 4, 5), (3, 2, 5, 3)])
def test_temporal_affine_backward_numeric(shape):
    N, T, D, M = shape
    rng = _rng(6)
    x = rng.standard_normal((N, T, D))
    w = rng.standard_normal((D, M))
    b = rng.standard_normal(M)
    dout = rng.standard_normal((N, T, M))
    out, cache = ref.temporal_affine_forward(x, w, b)
    assert out.shape == (N, T, M)
    np.testing.assert_allclose(out, np.einsum("ntd,dm->ntm", x, w) + b, rtol=1e-13)
    analytic = ref.temporal_affine_backward(dout, cache)
    numeric = _numeric_grads(lambda *a: ref.temporal_affine_forward(*a)[0],
                             [x, w, b], dout)
    _assert_grads_close(analytic, numeric, ["x", "w", "b"])


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 3), (3, 4, 3, 2)])
def test_word_embedding_backward_numeric(shape):
    N, T, V, D = shape
    rng = _rng(7)
    x = rng.integers(V, size=(N, T))
    W = rng.standard_normal((V, D))
    dout = rng.standard_normal((N, T, D))
    _, cache = ref.word_embedding_forward(x, W)
    dW = ref.word_embedding_backward(dout, cache)
    dW_num = ref.eval_numerical_gradient_array(
        lambda W: ref.word_embedding_forward(x, W)[0], W, dout, h=H_STEP)
    assert dW.shape == (V, D)
    assert ref.rel_error(dW, dW_num) < GRAD_TOL


@pytest.mark.parametrize("shape, p", [((1, 1, 1), 1.0), ((2, 3, 4), 1.0),
                                      ((3, 5, 7), 0.5), ((4, 2, 3), 0.0)])
def test_temporal_softmax_loss_dx_numeric(shape, p):
    N, T, V = shape
    rng = _rng(8)
    x = rng.standard_normal((N, T, V))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) < p
    _, dx = ref.temporal_softmax_loss(x, y, mask)
    dx_num = ref.eval_numerical_gradient(
        lambda x: ref.temporal_softmax_loss(x, y, mask)[0], x, h=H_STEP)
    assert dx.shape == (N, T, V)
    assert ref.rel_error(dx, dx_num) < GRAD_TOL


# ---------------------------------------------------------------------------
# temporal_softmax_loss semantics
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("N, T, V, p, expected, tol", [
    (100, 1, 10, 1.0, 2.3, 0.1),
    (100, 10, 10, 1.0, 23.0, 0.5),
    (5000, 10, 10, 0.1, 2.3, 0.1),
])
def test_temporal_softmax_loss_sanity(N, T, V, p, expected, tol):
    # As in the notebook: near-uniform scores give ~log(V) per counted entry.
    rng = _rng(9)
    x = 0.001 * rng.standard_normal((N, T, V))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) <= p
    loss, dx = ref.temporal_softmax_loss(x, y, mask)
    assert isinstance(loss, float)
    assert abs(loss - expected) < tol
    assert dx.shape == (N, T, V)


def test_temporal_softmax_loss_divides_by_n_not_mask_count():
    N, T, V = 4, 3, 6
    x = np.zeros((N, T, V))
    y = np.arange(N * T).reshape(N, T) % V
    mask = np.zeros((N, T), dtype=bool)
    mask[0, 0] = mask[1, 2] = mask[3, 1] = True  # 3 counted entries
    loss, dx = ref.temporal_softmax_loss(x, y, mask)
    assert loss == pytest.approx(3 * np.log(V) / N, rel=1e-14)
    # Masked entries get no gradient; counted ones get (softmax - onehot)/N.
    assert np.all(dx[~mask] == 0)
    row = np.full(V, 1.0 / V)
    row[y[0, 0]] -= 1.0
    np.testing.assert_allclose(dx[0, 0], row / N, rtol=1e-14)


def test_temporal_softmax_loss_is_stable_for_huge_scores():
    x = np.array([[[1e4, -1e4, 0.0], [-1e4, 1e4, 3e3]]])
    y = np.array([[1, 1]])
    mask = np.ones((1, 2), dtype=bool)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        loss, dx = ref.temporal_softmax_loss(x, y, mask)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    # Step 0 puts the target 2e4 below the max; step 1 predicts it perfectly.
    assert loss == pytest.approx(2e4, rel=1e-12)
    np.testing.assert_allclose(dx[0, 0], [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(dx[0, 1], [0.0, 0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------------
# Word embedding, LSTM helpers, edge cases
# ---------------------------------------------------------------------------

def test_word_embedding_backward_accumulates_repeated_indices():
    W = np.arange(12, dtype=np.float64).reshape(4, 3)
    x = np.array([[1, 1, 3], [1, 0, 3]])
    dout = np.arange(1, 19, dtype=np.float64).reshape(2, 3, 3)
    out, cache = ref.word_embedding_forward(x, W)
    np.testing.assert_array_equal(out, W[x])
    dW = ref.word_embedding_backward(dout, cache)
    expected = np.zeros((4, 3))
    expected[0] = dout[1, 1]
    expected[1] = dout[0, 0] + dout[0, 1] + dout[1, 0]
    expected[2] = 0.0  # unused word
    expected[3] = dout[0, 2] + dout[1, 2]
    np.testing.assert_array_equal(dW, expected)


def test_lstm_gate_order_is_i_f_o_g():
    """With zero weights the gates are the activated bias slices, in order."""
    N, D, H = 2, 3, 2
    b = np.array([0.3, -0.2, 1.1, -0.7, 0.5, 0.9, -1.3, 0.4])
    i, f, o, g = (b[k * H:(k + 1) * H] for k in range(4))
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    prev_c = np.array([[0.5, -1.0], [2.0, 0.25]])
    next_h, next_c, _ = ref.lstm_step_forward(
        np.ones((N, D)), np.ones((N, H)), prev_c,
        np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), b)
    exp_c = sig(f) * prev_c + sig(i) * np.tanh(g)
    np.testing.assert_allclose(next_c, exp_c, rtol=1e-14)
    np.testing.assert_allclose(next_h, sig(o) * np.tanh(exp_c), rtol=1e-14)


def test_lstm_forward_c0_with_zero_c0_equals_lstm_forward():
    rng = _rng(10)
    N, T, D, H = 3, 4, 5, 2
    x, h0, Wx, Wh, b = _rnn_params(rng, N, T, D, H, gates=4)
    h, cache = ref.lstm_forward(x, h0, Wx, Wh, b)
    h_c0, cache_c0 = ref.lstm_forward_c0(x, h0, np.zeros((N, H)), Wx, Wh, b)
    np.testing.assert_array_equal(h, h_c0)
    np.testing.assert_array_equal(cache["c"], cache_c0["c"])
    np.testing.assert_array_equal(cache_c0["h"], h)
    assert cache_c0["gates"].shape == (N, T, 4 * H)
    # The exposed cell states and gates are the ones the recurrence used.
    gates = cache_c0["gates"]
    c_prev = np.concatenate((np.zeros((N, 1, H)), cache_c0["c"][:, :-1]), axis=1)
    np.testing.assert_allclose(
        cache_c0["c"], gates[..., H:2 * H] * c_prev + gates[..., :H] * gates[..., 3 * H:],
        rtol=1e-14)
    np.testing.assert_allclose(h, gates[..., 2 * H:3 * H] * np.tanh(cache_c0["c"]),
                               rtol=1e-14)


def test_lstm_forward_c0_nonzero_c0_matches_step_loop():
    rng = _rng(11)
    N, T, D, H = 2, 3, 4, 3
    x, h0, Wx, Wh, b = _rnn_params(rng, N, T, D, H, gates=4)
    c0 = rng.standard_normal((N, H))
    h, cache = ref.lstm_forward_c0(x, h0, c0, Wx, Wh, b)
    prev_h, prev_c = h0, c0
    for t in range(T):
        prev_h, prev_c, _ = ref.lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        np.testing.assert_array_equal(h[:, t], prev_h)
        np.testing.assert_array_equal(cache["c"][:, t], prev_c)
    np.testing.assert_array_equal(cache["c0"], c0)


def test_lstm_backward_full_without_dc_equals_lstm_backward():
    rng = _rng(12)
    N, T, D, H = 3, 4, 5, 2
    x, h0, Wx, Wh, b = _rnn_params(rng, N, T, D, H, gates=4)
    dh = rng.standard_normal((N, T, H))
    _, cache = ref.lstm_forward(x, h0, Wx, Wh, b)
    dx, dh0, dWx, dWh, db = ref.lstm_backward(dh, cache)
    full = ref.lstm_backward_full(dh, cache)
    full_zero_dc = ref.lstm_backward_full(dh, cache, dc=np.zeros((N, T, H)))
    for got in (full, full_zero_dc):
        fdx, fdh0, fdc0, fdWx, fdWh, fdb = got
        for a, e in ((fdx, dx), (fdh0, dh0), (fdWx, dWx), (fdWh, dWh), (fdb, db)):
            np.testing.assert_array_equal(a, e)
        assert fdc0.shape == (N, H)
        assert np.any(fdc0 != 0)


@pytest.mark.parametrize("layer", ["rnn", "lstm"])
def test_empty_sequence(layer):
    N, T, D, H = 2, 0, 3, 4
    gates = 4 if layer == "lstm" else 1
    x, h0, Wx, Wh, b = _rnn_params(_rng(13), N, T, D, H, gates=gates)
    fwd, bwd = ((ref.rnn_forward, ref.rnn_backward) if layer == "rnn"
                else (ref.lstm_forward, ref.lstm_backward))
    h, cache = fwd(x, h0, Wx, Wh, b)
    assert h.shape == (N, 0, H)
    dx, dh0, dWx, dWh, db = bwd(np.zeros((N, 0, H)), cache)
    assert dx.shape == (N, 0, D)
    for g, shape in ((dh0, h0.shape), (dWx, Wx.shape), (dWh, Wh.shape), (db, b.shape)):
        assert g.shape == shape and not np.any(g)


def test_sigmoid_and_lstm_are_stable_for_large_inputs():
    z = np.array([-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", divide="raise", invalid="raise"):
            s = ref.sigmoid(z)
            N, D, H = 2, 3, 2
            b = np.array([1e3, -1e3, -1e3, 1e3, -1e3, 1e3, 1e3, -1e3])
            next_h, next_c, _ = ref.lstm_step_forward(
                np.zeros((N, D)), np.zeros((N, H)), np.ones((N, H)),
                np.zeros((D, 4 * H)), np.zeros((H, 4 * H)), b)
    with np.errstate(over="ignore"):  # the naive formula overflows to inf -> 0
        naive = 1.0 / (1.0 + np.exp(-z))
    np.testing.assert_allclose(s, naive, rtol=1e-15, atol=0)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.all(np.isfinite(next_h)) and np.all(np.isfinite(next_c))
    # i = (1, 0), f = (0, 1), o = (0, 1), g = (1, -1) for every row.
    np.testing.assert_allclose(next_c, [[1.0, 1.0]] * N)
    np.testing.assert_allclose(next_h, [[0.0, np.tanh(1.0)]] * N)


def test_integer_and_float32_inputs_are_computed_in_float64():
    N, D, H = 2, 3, 4
    rng = _rng(14)
    args64 = [rng.standard_normal(s) for s in ((N, D), (N, H), (D, H), (H, H), (H,))]
    args32 = [a.astype(np.float32) for a in args64]
    h32, _ = ref.rnn_step_forward(*args32)
    h_ref, _ = ref.rnn_step_forward(*[a.astype(np.float64) for a in args32])
    assert h32.dtype == np.float64
    np.testing.assert_array_equal(h32, h_ref)
    out, _ = ref.temporal_affine_forward(np.ones((1, 2, 3), dtype=np.int64),
                                         np.ones((3, 2), dtype=np.int32), [1, 2])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[[4.0, 5.0], [4.0, 5.0]]])


# ---------------------------------------------------------------------------
# Gradient-check helpers and rel_error
# ---------------------------------------------------------------------------

def test_numerical_gradient_helpers_are_correct_and_restore_x_exactly():
    rng = _rng(15)
    x = rng.standard_normal((3, 4)) * 10.0 + 0.1
    before = x.copy()
    g = ref.eval_numerical_gradient(lambda v: np.sum(v ** 3), x, h=1e-5)
    assert x.tobytes() == before.tobytes()
    np.testing.assert_allclose(g, 3 * before ** 2, rtol=1e-8)

    df = rng.standard_normal((3, 4))
    ga = ref.eval_numerical_gradient_array(lambda v: np.sin(v), x, df, h=1e-5)
    assert x.tobytes() == before.tobytes()
    np.testing.assert_allclose(ga, np.cos(before) * df, rtol=1e-7, atol=1e-9)

    # Tiny values, where (x + h) - h != x and (x - h) + h != x in floating
    # point: only restoring the saved value keeps x bit-identical.
    tiny = rng.standard_normal((4, 5)) * 1e-6
    assert np.any((tiny + 1e-5) - 1e-5 != tiny)
    assert np.any((tiny - 1e-5) + 1e-5 != tiny)
    before = tiny.copy()
    ref.eval_numerical_gradient(lambda v: np.sum(np.sin(v)), tiny, h=1e-5)
    assert tiny.tobytes() == before.tobytes()
    ref.eval_numerical_gradient_array(np.sin, tiny, np.ones((4, 5)), h=1e-5)
    assert tiny.tobytes() == before.tobytes()

    # Scalar-output check with eval_numerical_gradient_array on a 0-d array.
    x0 = np.array(0.7)
    g0 = ref.eval_numerical_gradient_array(lambda v: v * v, x0, np.array(1.0))
    assert x0 == 0.7 and g0.shape == () and g0 == pytest.approx(1.4, rel=1e-9)


def test_numerical_gradient_helpers_restore_x_when_f_raises():
    x = np.array([0.1, 0.2, 0.3])
    before = x.copy()
    calls = []

    def boom(v):
        calls.append(v.copy())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return float(np.sum(v))

    with pytest.raises(RuntimeError, match="boom"):
        ref.eval_numerical_gradient(boom, x)
    assert x.tobytes() == before.tobytes()
    assert not np.array_equal(calls[1], before)  # x really was perturbed
    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        ref.eval_numerical_gradient_array(lambda v: np.array([boom(v)]), x, np.ones(1))
    assert x.tobytes() == before.tobytes()


def test_numerical_gradient_helpers_reject_non_float_arrays():
    with pytest.raises(TypeError, match="x must be a floating-point numpy array"):
        ref.eval_numerical_gradient(np.sum, [1.0, 2.0])
    with pytest.raises(TypeError, match="dtype int64"):
        ref.eval_numerical_gradient_array(lambda v: v, np.arange(3), np.ones(3))


def test_rel_error():
    assert ref.rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert ref.rel_error(np.array([1.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(0.5)
    # Elementwise maximum, with the 1e-8 floor on the denominator.
    assert ref.rel_error(np.array([0.0, 1.0]), np.array([1e-9, 1.0])) == pytest.approx(0.1)
    assert ref.rel_error(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0


# ---------------------------------------------------------------------------
# Bad shapes
# ---------------------------------------------------------------------------

def _bad_cases():
    r = np.ones
    N, T, D, H, V, M = 2, 3, 4, 5, 6, 7
    _, rnn_step_cache = ref.rnn_step_forward(r((N, D)), r((N, H)), r((D, H)), r((H, H)), r(H))
    _, rnn_cache = ref.rnn_forward(r((N, T, D)), r((N, H)), r((D, H)), r((H, H)), r(H))
    _, _, lstm_step_cache = ref.lstm_step_forward(
        r((N, D)), r((N, H)), r((N, H)), r((D, 4 * H)), r((H, 4 * H)), r(4 * H))
    _, lstm_cache = ref.lstm_forward(
        r((N, T, D)), r((N, H)), r((D, 4 * H)), r((H, 4 * H)), r(4 * H))
    _, emb_cache = ref.word_embedding_forward(np.zeros((N, T), dtype=int), r((V, D)))
    _, aff_cache = ref.temporal_affine_forward(r((N, T, D)), r((D, M)), r(M))
    idx = np.zeros((N, T), dtype=int)
    # (call, argument name, expected shape text, actual shape text)
    return [
        (lambda: ref.rnn_step_forward(r((N, D)), r((N, H)), r((D + 1, H)), r((H, H)), r(H)),
         "Wx", "(4, 5)", "(5, 5)"),
        (lambda: ref.rnn_step_forward(r((N, D)), r((N + 1, H)), r((D, H)), r((H, H)), r(H)),
         "prev_h", "(2, 5)", "(3, 5)"),
        (lambda: ref.rnn_step_forward(r((N, D)), r((N, H)), r((D, H)), r((H, H)), r(H + 1)),
         "b", "(5,)", "(6,)"),
        (lambda: ref.rnn_step_backward(r((N, H + 1)), rnn_step_cache),
         "dnext_h", "(2, 5)", "(2, 6)"),
        (lambda: ref.rnn_forward(r((N, D)), r((N, H)), r((D, H)), r((H, H)), r(H)),
         "x", "(N, T, D)", "(2, 4)"),
        (lambda: ref.rnn_forward(r((N, T, D)), r((N, H)), r((D, H)), r((H, H + 1)), r(H)),
         "Wh", "(5, 5)", "(5, 6)"),
        (lambda: ref.rnn_backward(r((N, T + 1, H)), rnn_cache),
         "dh", "(2, 3, 5)", "(2, 4, 5)"),
        (lambda: ref.lstm_step_forward(r((N, D)), r((N, H)), r((N, H + 1)),
                                       r((D, 4 * H)), r((H, 4 * H)), r(4 * H)),
         "prev_c", "(2, 5)", "(2, 6)"),
        (lambda: ref.lstm_step_forward(r((N, D)), r((N, H)), r((N, H)),
                                       r((D, 4 * H + 1)), r((H, 4 * H)), r(4 * H)),
         "Wx", "(4, 20)", "(4, 21)"),
        (lambda: ref.lstm_step_backward(r((N, H)), r((N + 1, H)), lstm_step_cache),
         "dnext_c", "(2, 5)", "(3, 5)"),
        (lambda: ref.lstm_forward(r((N, T, D)), r((N, H)), r((D, 4 * H)), r((H, 4 * H)), r(H)),
         "b", "(20,)", "(5,)"),
        (lambda: ref.lstm_forward_c0(r((N, T, D)), r((N, H)), r((N, H - 1)),
                                     r((D, 4 * H)), r((H, 4 * H)), r(4 * H)),
         "c0", "(2, 5)", "(2, 4)"),
        (lambda: ref.lstm_backward(r((N, T, H + 1)), lstm_cache),
         "dh", "(2, 3, 5)", "(2, 3, 6)"),
        (lambda: ref.lstm_backward_full(r((N, T, H)), lstm_cache, dc=r((N, H))),
         "dc", "(N, T, H)", "(2, 5)"),
        (lambda: ref.word_embedding_forward(np.zeros((N, T, 1), dtype=int), r((V, D))),
         "x", "(N, T)", "(2, 3, 1)"),
        (lambda: ref.word_embedding_backward(r((N, T, D + 1)), emb_cache),
         "dout", "(2, 3, 4)", "(2, 3, 5)"),
        (lambda: ref.temporal_affine_forward(r((N, T, D)), r((D + 1, M)), r(M)),
         "w", "(4, 7)", "(5, 7)"),
        (lambda: ref.temporal_affine_backward(r((N, T, M - 1)), aff_cache),
         "dout", "(2, 3, 7)", "(2, 3, 6)"),
        (lambda: ref.temporal_softmax_loss(r((N, T, V)), idx[:, :-1], r((N, T))),
         "y", "(2, 3)", "(2, 2)"),
        (lambda: ref.temporal_softmax_loss(r((N, T, V)), idx, r((N + 1, T))),
         "mask", "(2, 3)", "(3, 3)"),
    ]


@pytest.mark.parametrize("case", range(20))
def test_bad_shapes_raise_value_error_naming_argument(case):
    cases = _bad_cases()
    assert len(cases) == 20
    call, name, expected, actual = cases[case]
    with pytest.raises(ValueError) as info:
        call()
    msg = str(info.value)
    assert f" {name} must" in msg, msg
    assert expected in msg, msg
    assert actual in msg, msg


def test_bad_indices_and_dtypes_raise_value_error():
    W = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"x must hold indices in \[0, 4\)"):
        ref.word_embedding_forward(np.array([[0, 4]]), W)
    with pytest.raises(ValueError, match=r"x must hold indices in \[0, 4\)"):
        ref.word_embedding_forward(np.array([[-1, 2]]), W)
    with pytest.raises(ValueError, match="x must be an integer array"):
        ref.word_embedding_forward(np.array([[0.0, 1.0]]), W)
    with pytest.raises(ValueError, match=r"y must hold indices in \[0, 3\)"):
        ref.temporal_softmax_loss(np.ones((1, 2, 3)), np.array([[0, 3]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="Wx must have shape"):
        ref.lstm_step_forward(np.ones((1, 2)), np.ones((1, 3)), np.ones((1, 3)),
                              np.ones((2, 10)), np.ones((3, 12)), np.ones(12))
    with pytest.raises(ValueError, match="b must be a real numeric array"):
        ref.rnn_step_forward(np.ones((1, 2)), np.ones((1, 3)), np.ones((2, 3)),
                             np.ones((3, 3)), np.array(["a", "b", "c"]))


# ---------------------------------------------------------------------------
# Independent cross-check against torch's own layers (float64)
# ---------------------------------------------------------------------------

def test_matches_torch_rnn_and_lstm_float64():
    torch = pytest.importorskip("torch")
    rng = _rng(16)
    N, T, D, H = 3, 4, 5, 2
    for layer in ("rnn", "lstm"):
        G = 4 if layer == "lstm" else 1
        x, h0, Wx, Wh, b = _rnn_params(rng, N, T, D, H, gates=G)
        dh = rng.standard_normal((N, T, H))
        if layer == "rnn":
            mod = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True,
                               dtype=torch.float64)
            perm = np.arange(H)
        else:
            mod = torch.nn.LSTM(D, H, batch_first=True, dtype=torch.float64)
            # ours i, f, o, g -> torch i, f, g, o
            perm = np.concatenate([np.arange(k * H, (k + 1) * H) for k in (0, 1, 3, 2)])
        with torch.no_grad():
            mod.weight_ih_l0.copy_(torch.from_numpy(Wx[:, perm].T.copy()))
            mod.weight_hh_l0.copy_(torch.from_numpy(Wh[:, perm].T.copy()))
            mod.bias_ih_l0.copy_(torch.from_numpy(b[perm].copy()))
            mod.bias_hh_l0.zero_()
        xt = torch.from_numpy(x.copy()).requires_grad_()
        h0t = torch.from_numpy(h0[None].copy()).requires_grad_()
        if layer == "rnn":
            out, _ = mod(xt, h0t)
            h, cache = ref.rnn_forward(x, h0, Wx, Wh, b)
            grads = ref.rnn_backward(dh, cache)
        else:
            out, _ = mod(xt, (h0t, torch.zeros_like(h0t)))
            h, cache = ref.lstm_forward(x, h0, Wx, Wh, b)
            grads = ref.lstm_backward(dh, cache)
        (out * torch.from_numpy(dh)).sum().backward()
        assert ref.rel_error(h, out.detach().numpy()) < 1e-10
        dx, dh0, dWx, dWh, db = grads
        torch_grads = [
            xt.grad.numpy(), h0t.grad.numpy()[0],
            mod.weight_ih_l0.grad.numpy().T[:, np.argsort(perm)],
            mod.weight_hh_l0.grad.numpy().T[:, np.argsort(perm)],
            mod.bias_ih_l0.grad.numpy()[np.argsort(perm)],
        ]
        for name, a, t in zip(["x", "h0", "Wx", "Wh", "b"], grads, torch_grads):
            assert ref.rel_error(a, t) < 1e-10, (layer, name)
