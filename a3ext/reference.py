"""Golden reference layers in plain numpy float64.

This module re-implements the layer API of the classic RNN-captioning
assignment (``rnn_layers.py`` / ``gradient_check.py``) with exactly its
semantics.  It is the ground truth the C++ ops in :mod:`a3ext.ops` are
tested against, so it favours clarity over speed.  It imports nothing but
numpy.

Conventions
-----------
* Everything is batch-major: a sequence input ``x`` is ``(N, T, D)``, the
  hidden states ``h`` are ``(N, T, H)`` and do **not** include ``h0``.
* Vanilla RNN: ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``.
* LSTM: pre-activations ``a = x @ Wx + prev_h @ Wh + b`` of width ``4H`` are
  split in the order **input, forget, output, block input** (``i, f, o, g``);
  ``i, f, o`` go through a sigmoid and ``g`` through tanh, then
  ``next_c = f * prev_c + i * g`` and ``next_h = o * tanh(next_c)``.
  ``lstm_forward`` starts from ``c0 = 0``; :func:`lstm_forward_c0` and
  :func:`lstm_backward_full` are the extensions with an explicit ``c0``, an
  upstream gradient on every cell state and a returned ``dc0``.
* The ``dh`` given to a sequence backward is the upstream gradient of every
  hidden state ``h[:, t]`` (not only the last one).
* ``word_embedding_backward`` accumulates repeated indices.
* ``temporal_softmax_loss`` sums over time steps and unmasked entries and
  divides by ``N`` (not by the number of unmasked entries).

All float inputs are converted with ``np.array(..., dtype=np.float64)``;
the caches hold these float64 copies, so later in-place changes to the
caller's arrays (as the numerical-gradient helpers make) never corrupt a
cache.  Shapes are validated and a bad one raises ``ValueError`` naming the
function, the argument, the expected shape and the actual shape.

Cache layout
------------
Caches are plain dicts.  Step caches hold the step's inputs and activations.
The sequence caches of :func:`rnn_forward`, :func:`lstm_forward` and
:func:`lstm_forward_c0` hold ``"h0"`` and ``"h"`` (all hidden states,
``(N, T, H)``); the LSTM ones also hold ``"c0"`` (``(N, H)``), ``"c"`` (all
cell states, ``(N, T, H)``) and ``"gates"`` (activated ``i, f, o, g``,
``(N, T, 4H)``), plus ``"steps"``, the list of per-step caches the backward
walks through.

May import: no other a3ext module; outside a3ext: numpy.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "rnn_step_forward",
    "rnn_step_backward",
    "rnn_forward",
    "rnn_backward",
    "lstm_step_forward",
    "lstm_step_backward",
    "lstm_forward",
    "lstm_backward",
    "lstm_forward_c0",
    "lstm_backward_full",
    "word_embedding_forward",
    "word_embedding_backward",
    "temporal_affine_forward",
    "temporal_affine_backward",
    "temporal_softmax_loss",
    "sigmoid",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "rel_error",
]


# ---------------------------------------------------------------------------
# Input conversion and shape validation
# ---------------------------------------------------------------------------

_DIM_RE = re.compile(r"^(\d*)([A-Za-z]\w*)$")


def _f64(fn, name, a):
    """Return a float64 copy of ``a`` or raise ValueError naming ``name``."""
    a_np = np.asarray(a)
    if a_np.dtype.kind not in "biuf":
        raise ValueError(
            f"{fn}: {name} must be a real numeric array, got dtype {a_np.dtype}"
        )
    return np.array(a_np, dtype=np.float64)


def _expect(fn, name, arr, spec, sizes):
    """Check that ``arr`` has the symbolic shape ``spec``.

    ``spec`` is a tuple of dimension symbols such as ``("N", "T", "D")`` or
    ``("D", "4H")``.  ``sizes`` maps symbols to sizes already fixed by
    earlier arguments; symbols not yet in it are bound from ``arr`` (and
    added to ``sizes``).  On mismatch raises ValueError with the expected
    and the actual shape.
    """
    pretty = "(" + ", ".join(spec) + ("," if len(spec) == 1 else "") + ")"
    shape = tuple(arr.shape)
    if len(shape) != len(spec):
        raise ValueError(
            f"{fn}: {name} must be a {len(spec)}-D array of shape {pretty}, "
            f"got a {len(shape)}-D array of shape {shape}"
        )
    parsed = []
    for sym in spec:
        m = _DIM_RE.match(sym)
        assert m is not None, sym
        parsed.append((int(m.group(1)) if m.group(1) else 1, m.group(2)))
    # Bind unknown symbols from this array, first occurrence wins.
    new = {}
    for (mult, sym), n in zip(parsed, shape):
        if sym in sizes or sym in new:
            continue
        if n % mult:
            raise ValueError(
                f"{fn}: {name} must have shape {pretty}, got {shape}: "
                f"size {n} is not a multiple of {mult}"
            )
        new[sym] = n // mult
    known = {**sizes, **new}
    expected = tuple(mult * known[sym] for mult, sym in parsed)
    if shape != expected:
        raise ValueError(
            f"{fn}: {name} must have shape {pretty} = {expected}, got {shape}"
        )
    sizes.update(new)


def _int_indices(fn, name, a, high):
    """Integer index array with every value in ``[0, high)``."""
    a_np = np.asarray(a)
    if a_np.dtype.kind not in "iu":
        raise ValueError(
            f"{fn}: {name} must be an integer array, got dtype {a_np.dtype}"
        )
    if a_np.size and (a_np.min() < 0 or a_np.max() >= high):
        raise ValueError(
            f"{fn}: {name} must hold indices in [0, {high}), got values in "
            f"[{a_np.min()}, {a_np.max()}]"
        )
    return np.array(a_np, dtype=np.intp)


# ---------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------

def sigmoid(x):
    """Numerically stable logistic sigmoid, elementwise.

    Uses ``1 / (1 + exp(-x))`` for ``x >= 0`` and ``exp(x) / (1 + exp(x))``
    for ``x < 0`` so no ``exp`` ever overflows (no warnings for large |x|).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    neg = ~pos
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[neg])
    out[neg] = e / (1.0 + e)
    return out


# ---------------------------------------------------------------------------
# Vanilla RNN
# ---------------------------------------------------------------------------

def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One time step of a tanh RNN.

    Inputs:
      x:      (N, D) inputs of this step
      prev_h: (N, H) previous hidden state
      Wx:     (D, H) input-to-hidden weights
      Wh:     (H, H) hidden-to-hidden weights
      b:      (H,)   bias

    Returns ``(next_h, cache)`` with ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``
    of shape (N, H).
    """
    fn = "rnn_step_forward"
    x, prev_h, Wx, Wh, b = (
        _f64(fn, n, a)
        for n, a in (("x", x), ("prev_h", prev_h), ("Wx", Wx), ("Wh", Wh), ("b", b))
    )
    s = {}
    _expect(fn, "x", x, ("N", "D"), s)
    _expect(fn, "prev_h", prev_h, ("N", "H"), s)
    _expect(fn, "Wx", Wx, ("D", "H"), s)
    _expect(fn, "Wh", Wh, ("H", "H"), s)
    _expect(fn, "b", b, ("H",), s)
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    cache = {"x": x, "prev_h": prev_h, "Wx": Wx, "Wh": Wh, "next_h": next_h}
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """Backward of :func:`rnn_step_forward`.

    Inputs:
      dnext_h: (N, H) upstream gradient of ``next_h``
      cache:   from :func:`rnn_step_forward`

    Returns ``(dx, dprev_h, dWx, dWh, db)`` with shapes (N, D), (N, H),
    (D, H), (H, H), (H,).
    """
    fn = "rnn_step_backward"
    dnext_h = _f64(fn, "dnext_h", dnext_h)
    N, H = cache["next_h"].shape
    _expect(fn, "dnext_h", dnext_h, ("N", "H"), {"N": N, "H": H})
    da = dnext_h * (1.0 - cache["next_h"] ** 2)
    dx = da @ cache["Wx"].T
    dprev_h = da @ cache["Wh"].T
    dWx = cache["x"].T @ da
    dWh = cache["prev_h"].T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """A tanh RNN over a whole sequence.

    Inputs:
      x:  (N, T, D) input sequence
      h0: (N, H)    initial hidden state
      Wx: (D, H), Wh: (H, H), b: (H,)

    Returns ``(h, cache)``; ``h`` (N, T, H) holds the hidden states of all
    time steps (``h0`` excluded).  ``T = 0`` gives an empty ``h``.
    """
    fn = "rnn_forward"
    x, h0, Wx, Wh, b = (
        _f64(fn, n, a)
        for n, a in (("x", x), ("h0", h0), ("Wx", Wx), ("Wh", Wh), ("b", b))
    )
    s = {}
    _expect(fn, "x", x, ("N", "T", "D"), s)
    _expect(fn, "h0", h0, ("N", "H"), s)
    _expect(fn, "Wx", Wx, ("D", "H"), s)
    _expect(fn, "Wh", Wh, ("H", "H"), s)
    _expect(fn, "b", b, ("H",), s)
    N, T, D, H = s["N"], s["T"], s["D"], s["H"]
    h = np.zeros((N, T, H))
    steps = []
    prev_h = h0
    for t in range(T):
        prev_h, step = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        steps.append(step)
    cache = {"shape": (N, T, D, H), "h0": h0, "h": h, "steps": steps}
    return h, cache


def rnn_backward(dh, cache):
    """Backward of :func:`rnn_forward`.

    Inputs:
      dh:    (N, T, H) upstream gradient of every hidden state
      cache: from :func:`rnn_forward`

    Returns ``(dx, dh0, dWx, dWh, db)`` with shapes (N, T, D), (N, H),
    (D, H), (H, H), (H,).
    """
    fn = "rnn_backward"
    N, T, D, H = cache["shape"]
    dh = _f64(fn, "dh", dh)
    _expect(fn, "dh", dh, ("N", "T", "H"), {"N": N, "T": T, "H": H})
    dx = np.zeros((N, T, D))
    dprev_h = np.zeros((N, H))
    dWx = np.zeros((D, H))
    dWh = np.zeros((H, H))
    db = np.zeros(H)
    for t in reversed(range(T)):
        dx_t, dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(
            dh[:, t, :] + dprev_h, cache["steps"][t]
        )
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dWx, dWh, db


# ---------------------------------------------------------------------------
# LSTM
# ---------------------------------------------------------------------------

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One time step of an LSTM, gate order i, f, o, g.

    Inputs:
      x:      (N, D)
      prev_h: (N, H)
      prev_c: (N, H)
      Wx:     (D, 4H)
      Wh:     (H, 4H)
      b:      (4H,)

    ``a = x @ Wx + prev_h @ Wh + b`` is split into ``a_i, a_f, a_o, a_g``
    (columns ``[0:H], [H:2H], [2H:3H], [3H:4H]``);
    ``i, f, o = sigmoid(a_i, a_f, a_o)``, ``g = tanh(a_g)``,
    ``next_c = f * prev_c + i * g``, ``next_h = o * tanh(next_c)``.

    Returns ``(next_h, next_c, cache)``, both (N, H).
    """
    fn = "lstm_step_forward"
    x, prev_h, prev_c, Wx, Wh, b = (
        _f64(fn, n, a)
        for n, a in (
            ("x", x), ("prev_h", prev_h), ("prev_c", prev_c),
            ("Wx", Wx), ("Wh", Wh), ("b", b),
        )
    )
    s = {}
    _expect(fn, "x", x, ("N", "D"), s)
    _expect(fn, "prev_h", prev_h, ("N", "H"), s)
    _expect(fn, "prev_c", prev_c, ("N", "H"), s)
    _expect(fn, "Wx", Wx, ("D", "4H"), s)
    _expect(fn, "Wh", Wh, ("H", "4H"), s)
    _expect(fn, "b", b, ("4H",), s)
    H = s["H"]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:4 * H])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = {
        "x": x, "prev_h": prev_h, "prev_c": prev_c, "Wx": Wx, "Wh": Wh,
        "i": i, "f": f, "o": o, "g": g, "next_c": next_c, "tanh_c": tanh_c,
    }
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward of :func:`lstm_step_forward`.

    Inputs:
      dnext_h: (N, H) upstream gradient of ``next_h``
      dnext_c: (N, H) upstream gradient of ``next_c``
      cache:   from :func:`lstm_step_forward`

    Returns ``(dx, dprev_h, dprev_c, dWx, dWh, db)`` with shapes (N, D),
    (N, H), (N, H), (D, 4H), (H, 4H), (4H,).
    """
    fn = "lstm_step_backward"
    N, H = cache["next_c"].shape
    dnext_h = _f64(fn, "dnext_h", dnext_h)
    dnext_c = _f64(fn, "dnext_c", dnext_c)
    _expect(fn, "dnext_h", dnext_h, ("N", "H"), {"N": N, "H": H})
    _expect(fn, "dnext_c", dnext_c, ("N", "H"), {"N": N, "H": H})
    i, f, o, g = cache["i"], cache["f"], cache["o"], cache["g"]
    tanh_c = cache["tanh_c"]
    dc = dnext_c + dnext_h * o * (1.0 - tanh_c ** 2)
    do = dnext_h * tanh_c
    di = dc * g
    df = dc * cache["prev_c"]
    dg = dc * i
    dprev_c = dc * f
    da = np.concatenate(
        (di * i * (1.0 - i), df * f * (1.0 - f), do * o * (1.0 - o), dg * (1.0 - g ** 2)),
        axis=1,
    )
    dx = da @ cache["Wx"].T
    dprev_h = da @ cache["Wh"].T
    dWx = cache["x"].T @ da
    dWh = cache["prev_h"].T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward_c0(x, h0, c0, Wx, Wh, b):
    """An LSTM over a whole sequence starting from an explicit cell state.

    Inputs:
      x:  (N, T, D)
      h0: (N, H) initial hidden state
      c0: (N, H) initial cell state
      Wx: (D, 4H), Wh: (H, 4H), b: (4H,)  (gate order i, f, o, g)

    Returns ``(h, cache)``; ``h`` (N, T, H) are the hidden states of all
    steps (``h0`` excluded).  All cell states are exposed as
    ``cache["c"]`` (N, T, H) (``c0`` excluded, it is ``cache["c0"]``), and
    the activated gates as ``cache["gates"]`` (N, T, 4H).
    """
    fn = "lstm_forward_c0"
    x, h0, c0, Wx, Wh, b = (
        _f64(fn, n, a)
        for n, a in (
            ("x", x), ("h0", h0), ("c0", c0), ("Wx", Wx), ("Wh", Wh), ("b", b),
        )
    )
    return _lstm_forward(fn, x, h0, c0, Wx, Wh, b)


def _lstm_forward(fn, x, h0, c0, Wx, Wh, b):
    s = {}
    _expect(fn, "x", x, ("N", "T", "D"), s)
    _expect(fn, "h0", h0, ("N", "H"), s)
    _expect(fn, "c0", c0, ("N", "H"), s)
    _expect(fn, "Wx", Wx, ("D", "4H"), s)
    _expect(fn, "Wh", Wh, ("H", "4H"), s)
    _expect(fn, "b", b, ("4H",), s)
    N, T, D, H = s["N"], s["T"], s["D"], s["H"]
    h = np.zeros((N, T, H))
    c = np.zeros((N, T, H))
    gates = np.zeros((N, T, 4 * H))
    steps = []
    prev_h, prev_c = h0, c0
    for t in range(T):
        prev_h, prev_c, step = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        c[:, t, :] = prev_c
        gates[:, t, :] = np.concatenate((step["i"], step["f"], step["o"], step["g"]), axis=1)
        steps.append(step)
    cache = {
        "shape": (N, T, D, H), "h0": h0, "c0": c0, "h": h, "c": c,
        "gates": gates, "steps": steps,
    }
    return h, cache


def lstm_forward(x, h0, Wx, Wh, b):
    """An LSTM over a whole sequence, with initial cell state ``c0 = 0``.

    Inputs:
      x:  (N, T, D)
      h0: (N, H)
      Wx: (D, 4H), Wh: (H, 4H), b: (4H,)  (gate order i, f, o, g)

    Returns ``(h, cache)`` with ``h`` (N, T, H) (``h0`` excluded).  The
    cache has the same layout as :func:`lstm_forward_c0`'s (all cell
    states in ``cache["c"]``).
    """
    fn = "lstm_forward"
    x, h0, Wx, Wh, b = (
        _f64(fn, n, a)
        for n, a in (("x", x), ("h0", h0), ("Wx", Wx), ("Wh", Wh), ("b", b))
    )
    return _lstm_forward(fn, x, h0, np.zeros_like(h0), Wx, Wh, b)


def lstm_backward_full(dh, cache, dc=None):
    """Backward of :func:`lstm_forward_c0` / :func:`lstm_forward`, in full.

    Inputs:
      dh:    (N, T, H) upstream gradient of every hidden state
      cache: from :func:`lstm_forward_c0` or :func:`lstm_forward`
      dc:    optional (N, T, H) upstream gradient of every cell state
             ``cache["c"][:, t]``; None means zero

    Returns ``(dx, dh0, dc0, dWx, dWh, db)`` with shapes (N, T, D), (N, H),
    (N, H), (D, 4H), (H, 4H), (4H,).
    """
    return _lstm_backward("lstm_backward_full", dh, cache, dc)


def lstm_backward(dh, cache):
    """Backward of :func:`lstm_forward`.

    Inputs:
      dh:    (N, T, H) upstream gradient of every hidden state
      cache: from :func:`lstm_forward`

    Returns ``(dx, dh0, dWx, dWh, db)`` with shapes (N, T, D), (N, H),
    (D, 4H), (H, 4H), (4H,).
    """
    dx, dh0, _dc0, dWx, dWh, db = _lstm_backward("lstm_backward", dh, cache, None)
    return dx, dh0, dWx, dWh, db


def _lstm_backward(fn, dh, cache, dc):
    N, T, D, H = cache["shape"]
    sizes = {"N": N, "T": T, "H": H}
    dh = _f64(fn, "dh", dh)
    _expect(fn, "dh", dh, ("N", "T", "H"), sizes)
    if dc is not None:
        dc = _f64(fn, "dc", dc)
        _expect(fn, "dc", dc, ("N", "T", "H"), sizes)
    dx = np.zeros((N, T, D))
    dprev_h = np.zeros((N, H))
    dprev_c = np.zeros((N, H))
    dWx = np.zeros((D, 4 * H))
    dWh = np.zeros((H, 4 * H))
    db = np.zeros(4 * H)
    for t in reversed(range(T)):
        dnext_c = dprev_c if dc is None else dprev_c + dc[:, t, :]
        dx_t, dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(
            dh[:, t, :] + dprev_h, dnext_c, cache["steps"][t]
        )
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    return dx, dprev_h, dprev_c, dWx, dWh, db


# ---------------------------------------------------------------------------
# Word embedding, temporal affine, temporal softmax loss
# ---------------------------------------------------------------------------

def word_embedding_forward(x, W):
    """Look up word vectors.

    Inputs:
      x: (N, T) integer word indices in ``[0, V)``
      W: (V, D) word vectors

    Returns ``(out, cache)`` with ``out[n, t] = W[x[n, t]]``, shape (N, T, D).
    """
    fn = "word_embedding_forward"
    W = _f64(fn, "W", W)
    s = {}
    _expect(fn, "W", W, ("V", "D"), s)
    x_arr = np.asarray(x)
    _expect(fn, "x", x_arr, ("N", "T"), s)
    x = _int_indices(fn, "x", x_arr, s["V"])
    out = W[x]
    cache = {"x": x, "W_shape": W.shape}
    return out, cache


def word_embedding_backward(dout, cache):
    """Backward of :func:`word_embedding_forward`.

    Inputs:
      dout:  (N, T, D) upstream gradient
      cache: from :func:`word_embedding_forward`

    Returns ``dW`` (V, D); a word used several times receives the sum of
    the gradients of all its uses (``np.add.at``).
    """
    fn = "word_embedding_backward"
    x = cache["x"]
    V, D = cache["W_shape"]
    dout = _f64(fn, "dout", dout)
    N, T = x.shape
    _expect(fn, "dout", dout, ("N", "T", "D"), {"N": N, "T": T, "D": D})
    dW = np.zeros((V, D))
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(x, w, b):
    """An affine layer applied at every time step.

    Inputs:
      x: (N, T, D), w: (D, M), b: (M,)

    Returns ``(out, cache)`` with ``out = x @ w + b`` of shape (N, T, M).
    """
    fn = "temporal_affine_forward"
    x, w, b = (_f64(fn, n, a) for n, a in (("x", x), ("w", w), ("b", b)))
    s = {}
    _expect(fn, "x", x, ("N", "T", "D"), s)
    _expect(fn, "w", w, ("D", "M"), s)
    _expect(fn, "b", b, ("M",), s)
    N, T, D, M = s["N"], s["T"], s["D"], s["M"]
    out = (x.reshape(N * T, D) @ w).reshape(N, T, M) + b
    cache = {"x": x, "w": w}
    return out, cache


def temporal_affine_backward(dout, cache):
    """Backward of :func:`temporal_affine_forward`.

    Inputs:
      dout:  (N, T, M) upstream gradient
      cache: from :func:`temporal_affine_forward`

    Returns ``(dx, dw, db)`` with shapes (N, T, D), (D, M), (M,).
    """
    fn = "temporal_affine_backward"
    x, w = cache["x"], cache["w"]
    N, T, D = x.shape
    M = w.shape[1]
    dout = _f64(fn, "dout", dout)
    _expect(fn, "dout", dout, ("N", "T", "M"), {"N": N, "T": T, "M": M})
    dout2 = dout.reshape(N * T, M)
    dx = (dout2 @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ dout2
    db = dout2.sum(axis=0)
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy summed over time steps, averaged over the batch.

    Inputs:
      x:    (N, T, V) scores
      y:    (N, T) integer targets in ``[0, V)``
      mask: (N, T) which entries count (boolean; numbers act as weights)

    ``loss = -sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]] / N`` -- the
    division is by ``N``, not by the number of unmasked entries.  The
    softmax subtracts the row maximum and the log-probabilities are taken
    as ``shifted - log(sum(exp(shifted)))``, so large scores neither
    overflow nor give ``log(0)``.

    Returns ``(loss, dx)``: a Python float and the gradient (N, T, V).
    ``N = 0`` gives ``loss = 0.0``.
    """
    fn = "temporal_softmax_loss"
    x = _f64(fn, "x", x)
    s = {}
    _expect(fn, "x", x, ("N", "T", "V"), s)
    y_arr = np.asarray(y)
    _expect(fn, "y", y_arr, ("N", "T"), s)
    y = _int_indices(fn, "y", y_arr, s["V"])
    mask = _f64(fn, "mask", mask)
    _expect(fn, "mask", mask, ("N", "T"), s)
    N, T, V = s["N"], s["T"], s["V"]

    x_flat = x.reshape(N * T, V)
    y_flat = y.reshape(N * T)
    mask_flat = mask.reshape(N * T)
    rows = np.arange(N * T)

    shifted = x_flat - (x_flat.max(axis=1, keepdims=True) if N * T else 0.0)
    log_z = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    log_probs = shifted - log_z
    probs = np.exp(log_probs)
    denom = max(N, 1)
    loss = -np.sum(mask_flat * log_probs[rows, y_flat]) / denom
    dx_flat = probs.copy()
    dx_flat[rows, y_flat] -= 1.0
    dx_flat /= denom
    dx_flat *= mask_flat[:, None]
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    dx = dx_flat.reshape(N, T, V)
    return float(loss), dx


# ---------------------------------------------------------------------------
# Gradient checking
# ---------------------------------------------------------------------------

def _check_mutable_float(fn, x):
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(
            f"{fn}: x must be a floating-point numpy array (it is perturbed "
            f"in place), got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else "")
        )
    if not x.flags.writeable:
        raise ValueError(f"{fn}: x must be writeable (it is perturbed in place)")


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Centered-difference gradient of a scalar function ``f`` at ``x``.

    ``grad[ix] = (f(x + h e_ix) - f(x - h e_ix)) / (2h)``.  ``x`` is
    perturbed in place, one entry at a time, and every entry is restored to
    its exact original value afterwards (also if ``f`` raises).

    Returns a float64 array shaped like ``x``. ``verbose`` (default True, as the
    assignment's) prints each index and its derivative.
    """
    _check_mutable_float("eval_numerical_gradient", x)
    grad = np.zeros(x.shape, dtype=np.float64)
    for ix in np.ndindex(*x.shape):
        oldval = x[ix].copy()
        try:
            x[ix] = oldval + h
            fxph = float(f(x))
            x[ix] = oldval - h
            fxmh = float(f(x))
        finally:
            x[ix] = oldval
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Centered-difference gradient of ``sum(f(x) * df)`` with respect to ``x``.

    ``f`` maps an array to an array; ``df`` is the upstream gradient of
    ``f(x)``.  ``x`` is perturbed in place, one entry at a time, and every
    entry is restored to its exact original value afterwards (also if
    ``f`` raises).

    Returns a float64 array shaped like ``x``.
    """
    _check_mutable_float("eval_numerical_gradient_array", x)
    df = np.asarray(df, dtype=np.float64)
    grad = np.zeros(x.shape, dtype=np.float64)
    for ix in np.ndindex(*x.shape):
        oldval = x[ix].copy()
        try:
            x[ix] = oldval + h
            pos = np.array(f(x), dtype=np.float64)
            x[ix] = oldval - h
            neg = np.array(f(x), dtype=np.float64)
        finally:
            x[ix] = oldval
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def rel_error(x, y):
    """Maximum elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.broadcast(x, y).size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))
