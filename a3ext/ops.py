"""The a3ext custom ops: public functions, fake kernels and autograd formulas.

Kernels are C++ (``csrc/cpu``) registered with the dispatcher under the
``a3ext`` namespace; this module is the one place where their fake (meta)
kernels and autograd formulas are registered, so they work with
``torch.compile``, ``torch.library.opcheck`` and ``gradcheck``.

Semantics are the assignment's (``a3ext.reference`` is the float64 golden
reference): batch-major shapes, ``x (N, T, D)``, ``h0 (N, H)``, ``h (N, T, H)``
excluding ``h0``; vanilla RNN ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``; LSTM
pre-activations ``a = x_t Wx + h_{t-1} Wh + b`` of width 4H split in the gate
order **i, f, o, g** (sigmoid on i, f, o; tanh on g), ``c_t = f*c_{t-1} + i*g``,
``h_t = o*tanh(c_t)``, ``c0 = 0`` unless given.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import Tensor

__all__ = ["rnn", "rnn_step", "lstm", "lstm_step", "rnn_packed", "lstm_packed", "pack_lengths", "gram",
           "cpu_isa", "gemm_backend"]

_ops = torch.ops.a3ext


# ---------------------------------------------------------------------------
# Validation shared by the fake kernels (the C++ kernels perform the same
# checks with the same messages for eager calls).
def _dtype_name(t: Tensor) -> str:
    return str(t.dtype)


def _check_same(op: str, ref: Tensor, ref_name: str, t: Tensor, name: str) -> None:
    if not t.is_floating_point():
        raise TypeError(
            f"{op}: {name} must be a floating-point tensor (torch.float32 or torch.float64), "
            f"but got {_dtype_name(t)}"
        )
    if t.dtype != ref.dtype:
        raise TypeError(
            f"{op}: all inputs must have the same dtype, but {name} is {_dtype_name(t)} "
            f"while {ref_name} is {_dtype_name(ref)}"
        )
    if t.device != ref.device:
        raise ValueError(
            f"{op}: all inputs must be on the same device, but {name} is on {t.device} "
            f"while {ref_name} is on {ref.device}"
        )


def _check_shape(op: str, t: Tensor, name: str, expected: tuple, expected_str: str) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(
            f"{op}: expected {name} of shape {expected_str} = {list(expected)}, "
            f"but got {list(t.shape)}"
        )


def _check_ndim(op: str, t: Tensor, name: str, shape_str: str, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(
            f"{op}: expected {name} of shape {shape_str}, but got a {t.dim()}-D tensor of shape "
            f"{list(t.shape)}"
        )


def _check_forward(op, x, h0, Wx, Wh, b, gate_mult):
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: x must be torch.float32 or torch.float64, but got {x.dtype}")
    _check_ndim(op, x, "x", "(N, T, D)", 3)
    _check_ndim(op, h0, "h0", "(N, H)", 2)
    for t, name in ((h0, "h0"), (Wx, "Wx"), (Wh, "Wh"), (b, "b")):
        if t is not None:
            _check_same(op, x, "x", t, name)
    N, T, D = x.shape
    H = h0.shape[1]
    if h0.shape[0] != N:
        raise ValueError(
            f"{op}: expected h0 of shape (N, H) with N = {N} (from x), but got {list(h0.shape)}"
        )
    _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult)
    return N, T, D, H


def _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult):
    G = gate_mult * H
    four = "4H" if gate_mult == 4 else "H"
    _check_shape(op, Wx, "Wx", (D, G), f"(D, {four})")
    _check_shape(op, Wh, "Wh", (H, G), f"(H, {four})")
    if b is not None:
        _check_shape(op, b, "b", (G,), f"({four},)")


def _check_like(op, t, name, x, shape, shape_str):
    """t has x's dtype and device and the given shape."""
    _check_same(op, x, "x", t, name)
    _check_shape(op, t, name, shape, shape_str)


def _empty_like_shape(ref: Tensor, *shape) -> Tensor:
    return torch.empty(shape, dtype=ref.dtype, device=ref.device)


# ---------------------------------------------------------------------------
# Fake kernels
@torch.library.register_fake("a3ext::rnn_forward")
def _rnn_forward_fake(x, h0, Wx, Wh, b):
    N, T, D, H = _check_forward("a3ext.rnn", x, h0, Wx, Wh, b, 1)
    return _empty_like_shape(x, N, T, H)


@torch.library.register_fake("a3ext::rnn_backward")
def _rnn_backward_fake(dh, x, h0, Wx, Wh, h):
    op = "a3ext.rnn_backward"
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, None, 1)
    _check_like(op, h, "h", x, (N, T, H), "(N, T, H)")
    _check_like(op, dh, "dh", x, (N, T, H), "(N, T, H)")
    return (
        _empty_like_shape(x, N, T, D),
        _empty_like_shape(x, N, H),
        _empty_like_shape(x, D, H),
        _empty_like_shape(x, H, H),
        _empty_like_shape(x, H),
    )


@torch.library.register_fake("a3ext::lstm_forward")
def _lstm_forward_fake(x, h0, c0, Wx, Wh, b):
    op = "a3ext.lstm"
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, b, 4)
    _check_like(op, c0, "c0", x, (N, H), "(N, H)")
    return _empty_like_shape(x, N, T, H), _empty_like_shape(x, N, T, H), _empty_like_shape(x, N, T, 4 * H)


@torch.library.register_fake("a3ext::lstm_backward")
def _lstm_backward_fake(dh, dc, x, h0, c0, Wx, Wh, h, c, gates):
    op = "a3ext.lstm_backward"
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, None, 4)
    _check_like(op, c0, "c0", x, (N, H), "(N, H)")
    _check_like(op, h, "h", x, (N, T, H), "(N, T, H)")
    _check_like(op, c, "c", x, (N, T, H), "(N, T, H)")
    _check_like(op, gates, "gates", x, (N, T, 4 * H), "(N, T, 4H)")
    if dh is not None:
        _check_like(op, dh, "dh", x, (N, T, H), "(N, T, H)")
    if dc is not None:
        _check_like(op, dc, "dc", x, (N, T, H), "(N, T, H)")
    return (
        _empty_like_shape(x, N, T, D),
        _empty_like_shape(x, N, H),
        _empty_like_shape(x, N, H),
        _empty_like_shape(x, D, 4 * H),
        _empty_like_shape(x, H, 4 * H),
        _empty_like_shape(x, 4 * H),
    )


def _check_packed(op, x, batch_sizes, h0, Wx, Wh, b, gate_mult):
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: x must be torch.float32 or torch.float64, but got {x.dtype}")
    _check_ndim(op, x, "packed x", "(P, D)", 2)
    _check_ndim(op, h0, "h0", "(B, H)", 2)
    if batch_sizes.dtype != torch.int64:
        raise TypeError(f"{op}: batch_sizes must be a torch.int64 tensor, but got {batch_sizes.dtype}")
    _check_ndim(op, batch_sizes, "batch_sizes", "(T,)", 1)
    if batch_sizes.device.type != "cpu":
        raise ValueError(
            f"{op}: batch_sizes must be on the CPU (as PackedSequence.batch_sizes), but it is on "
            f"{batch_sizes.device}"
        )
    for t, name in ((h0, "h0"), (Wx, "Wx"), (Wh, "Wh"), (b, "b")):
        if t is not None:
            _check_same(op, x, "x", t, name)
    P, D = x.shape
    B, H = h0.shape
    _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult)
    return P, B, D, H


@torch.library.register_fake("a3ext::rnn_packed_forward")
def _rnn_packed_forward_fake(x, batch_sizes, h0, Wx, Wh, b):
    P, B, D, H = _check_packed("a3ext.rnn_packed", x, batch_sizes, h0, Wx, Wh, b, 1)
    return _empty_like_shape(x, P, H)


@torch.library.register_fake("a3ext::rnn_packed_backward")
def _rnn_packed_backward_fake(dh, x, batch_sizes, h0, Wx, Wh, h):
    op = "a3ext.rnn_packed_backward"
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, None, 1)
    _check_like(op, h, "h", x, (P, H), "(P, H)")
    _check_like(op, dh, "dh", x, (P, H), "(P, H)")
    return (_empty_like_shape(x, P, D), _empty_like_shape(x, B, H), _empty_like_shape(x, D, H),
            _empty_like_shape(x, H, H), _empty_like_shape(x, H))


@torch.library.register_fake("a3ext::lstm_packed_forward")
def _lstm_packed_forward_fake(x, batch_sizes, h0, c0, Wx, Wh, b):
    op = "a3ext.lstm_packed"
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, b, 4)
    _check_like(op, c0, "c0", x, (B, H), "(B, H)")
    return _empty_like_shape(x, P, H), _empty_like_shape(x, P, H), _empty_like_shape(x, P, 4 * H)


@torch.library.register_fake("a3ext::lstm_packed_backward")
def _lstm_packed_backward_fake(dh, dc, x, batch_sizes, h0, c0, Wx, Wh, h, c, gates):
    op = "a3ext.lstm_packed_backward"
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, None, 4)
    _check_like(op, c0, "c0", x, (B, H), "(B, H)")
    _check_like(op, h, "h", x, (P, H), "(P, H)")
    _check_like(op, c, "c", x, (P, H), "(P, H)")
    _check_like(op, gates, "gates", x, (P, 4 * H), "(P, 4H)")
    if dh is not None:
        _check_like(op, dh, "dh", x, (P, H), "(P, H)")
    if dc is not None:
        _check_like(op, dc, "dc", x, (P, H), "(P, H)")
    return (_empty_like_shape(x, P, D), _empty_like_shape(x, B, H), _empty_like_shape(x, B, H),
            _empty_like_shape(x, D, 4 * H), _empty_like_shape(x, H, 4 * H), _empty_like_shape(x, 4 * H))


def _check_features(op, features):
    if features.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: features must be torch.float32 or torch.float64, but got {features.dtype}")
    _check_ndim(op, features, "features", "(N, C, H, W)", 4)


@torch.library.register_fake("a3ext::gram_forward")
def _gram_forward_fake(features, normalize=True):
    _check_features("a3ext.gram", features)
    N, C = features.shape[:2]
    return _empty_like_shape(features, N, C, C)


@torch.library.register_fake("a3ext::gram_backward")
def _gram_backward_fake(grad, features, normalize):
    op = "a3ext.gram_backward"
    _check_features(op, features)
    _check_same(op, features, "features", grad, "grad")
    N, C = features.shape[:2]
    _check_shape(op, grad, "grad", (N, C, C), "(N, C, C)")
    return torch.empty(features.shape, dtype=features.dtype, device=features.device)


# ---------------------------------------------------------------------------
# Autograd: the backward of each op is its own custom op.
def _rnn_setup_context(ctx, inputs, output):
    x, h0, Wx, Wh, _b = inputs
    ctx.save_for_backward(x, h0, Wx, Wh, output)


def _rnn_backward(ctx, dh):
    x, h0, Wx, Wh, h = ctx.saved_tensors
    return _ops.rnn_backward(dh, x, h0, Wx, Wh, h)



torch.library.register_autograd(
    "a3ext::rnn_forward", _rnn_backward, setup_context=_rnn_setup_context
)


def _lstm_setup_context(ctx, inputs, output):
    x, h0, c0, Wx, Wh, _b = inputs
    h, c, gates = output
    ctx.mark_non_differentiable(gates)
    # Unused outputs (usually c) get None instead of a zero tensor: the backward
    # op skips them rather than reading zeros.
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, h0, c0, Wx, Wh, h, c, gates)


def _lstm_backward(ctx, dh, dc, _dgates):
    x, h0, c0, Wx, Wh, h, c, gates = ctx.saved_tensors
    dx, dh0, dc0, dWx, dWh, db = _ops.lstm_backward(dh, dc, x, h0, c0, Wx, Wh, h, c, gates)
    return dx, dh0, dc0, dWx, dWh, db


torch.library.register_autograd(
    "a3ext::lstm_forward", _lstm_backward, setup_context=_lstm_setup_context
)


def _rnn_packed_setup_context(ctx, inputs, output):
    x, batch_sizes, h0, Wx, Wh, _b = inputs
    ctx.save_for_backward(x, batch_sizes, h0, Wx, Wh, output)


def _rnn_packed_backward(ctx, dh):
    x, batch_sizes, h0, Wx, Wh, h = ctx.saved_tensors
    dx, dh0, dWx, dWh, db = _ops.rnn_packed_backward(dh, x, batch_sizes, h0, Wx, Wh, h)
    return dx, None, dh0, dWx, dWh, db


torch.library.register_autograd(
    "a3ext::rnn_packed_forward", _rnn_packed_backward, setup_context=_rnn_packed_setup_context
)


def _lstm_packed_setup_context(ctx, inputs, output):
    x, batch_sizes, h0, c0, Wx, Wh, _b = inputs
    h, c, gates = output
    ctx.mark_non_differentiable(gates)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(x, batch_sizes, h0, c0, Wx, Wh, h, c, gates)


def _lstm_packed_backward(ctx, dh, dc, _dgates):
    x, batch_sizes, h0, c0, Wx, Wh, h, c, gates = ctx.saved_tensors
    dx, dh0, dc0, dWx, dWh, db = _ops.lstm_packed_backward(dh, dc, x, batch_sizes, h0, c0, Wx, Wh, h, c, gates)
    return dx, None, dh0, dc0, dWx, dWh, db


torch.library.register_autograd(
    "a3ext::lstm_packed_forward", _lstm_packed_backward, setup_context=_lstm_packed_setup_context
)


def _gram_setup_context(ctx, inputs, output):
    features, normalize = inputs
    ctx.normalize = normalize
    ctx.save_for_backward(features)


def _gram_backward(ctx, grad):
    (features,) = ctx.saved_tensors
    return _ops.gram_backward(grad, features, ctx.normalize), None


torch.library.register_autograd(
    "a3ext::gram_forward", _gram_backward, setup_context=_gram_setup_context
)


# ---------------------------------------------------------------------------
# Public API
def rnn(x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """Vanilla tanh RNN over a whole sequence.

    x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) -> h (N, T, H), the hidden
    state of every step (h0 excluded). float32 or float64; differentiable in every input.
    """
    return _ops.rnn_forward(x, h0, Wx, Wh, b)


def _check_step(op: str, x: Tensor, prev_h: Tensor) -> None:
    _check_ndim(op, x, "x", "(N, D)", 2)
    _check_ndim(op, prev_h, "prev_h", "(N, H)", 2)


def rnn_step(x: Tensor, prev_h: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """One vanilla RNN step: x (N, D), prev_h (N, H) -> next_h = tanh(x Wx + prev_h Wh + b)."""
    _check_step("a3ext.rnn_step", x, prev_h)
    return _ops.rnn_forward(x.unsqueeze(1), prev_h, Wx, Wh, b).squeeze(1)


def lstm(
    x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor, c0: Optional[Tensor] = None
) -> Tensor:
    """LSTM over a whole sequence, gate order i, f, o, g.

    x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,), c0 (N, H) or None (zeros,
    as in the assignment) -> h (N, T, H). Differentiable in every input.
    """
    if c0 is None:
        c0 = h0.new_zeros(h0.shape) if h0.dim() == 2 else h0
    return _ops.lstm_forward(x, h0, c0, Wx, Wh, b)[0]


def lstm_step(
    x: Tensor, prev_h: Tensor, prev_c: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor
) -> tuple[Tensor, Tensor]:
    """One LSTM step: x (N, D), prev_h (N, H), prev_c (N, H) -> (next_h, next_c)."""
    _check_step("a3ext.lstm_step", x, prev_h)
    h, c, _ = _ops.lstm_forward(x.unsqueeze(1), prev_h, prev_c, Wx, Wh, b)
    return h.squeeze(1), c.squeeze(1)


def rnn_packed(x: Tensor, batch_sizes: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """Vanilla tanh RNN over packed sequences (the layout of
    ``torch.nn.utils.rnn.PackedSequence``): no work is spent on padding.

    x (P, D): the rows of all sequences, time-major; step t holds ``batch_sizes[t]``
    rows, those of the first ``batch_sizes[t]`` sequences (sequences sorted by
    non-increasing length, see :func:`pack_lengths`). batch_sizes: int64 CPU (T,),
    non-increasing, each <= B. h0 (B, H) -> h (P, H) in the same packed order.
    Equal to :func:`rnn` on the padded batch at every valid position. CPU only.
    """
    return _ops.rnn_packed_forward(x, batch_sizes, h0, Wx, Wh, b)


def lstm_packed(
    x: Tensor, batch_sizes: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor, c0: Optional[Tensor] = None
) -> Tensor:
    """LSTM (gate order i, f, o, g) over packed sequences; see :func:`rnn_packed` for
    the layout. x (P, D), h0 / c0 (B, H) (c0 None = zeros) -> h (P, H). CPU only."""
    if c0 is None:
        c0 = h0.new_zeros(h0.shape) if h0.dim() == 2 else h0
    return _ops.lstm_packed_forward(x, batch_sizes, h0, c0, Wx, Wh, b)[0]


def pack_lengths(lengths: Tensor, T: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """The packed layout of a padded batch whose sequence n has ``lengths[n]`` valid
    steps (``0 <= lengths[n] <= T``, T defaults to max(lengths)).

    Returns ``(order, batch_sizes, index)``: ``order`` (B,) sorts the sequences by
    non-increasing length (stable), ``batch_sizes`` (max length,) int64 as
    :func:`rnn_packed` takes it, and ``index`` (P,) the position of every packed row
    in the row-major flattened (B, T) batch: ``packed = padded.reshape(B * T, -1)[index]``
    and ``padded.reshape(B * T, -1)[index] = packed`` unpacks.
    """
    lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
    if lengths.dim() != 1:
        raise ValueError(f"pack_lengths: expected lengths of shape (B,), but got {list(lengths.shape)}")
    B = lengths.shape[0]
    Tmax = int(lengths.max()) if B else 0
    T = Tmax if T is None else int(T)
    if B and (int(lengths.min()) < 0 or Tmax > T):
        raise ValueError(f"pack_lengths: lengths must be in [0, T = {T}], but got min {int(lengths.min())}, "
                         f"max {Tmax}")
    sorted_len, order = torch.sort(lengths, descending=True, stable=True)
    steps = torch.arange(Tmax)
    valid = steps[:, None] < sorted_len[None, :]  # (Tmax, B) time-major
    batch_sizes = valid.sum(1)
    index = (order[None, :] * T + steps[:, None])[valid]
    return order, batch_sizes, index


def gram(features: Tensor, normalize: bool = True) -> Tensor:
    """Gram matrices of feature maps: features (N, C, H, W) -> G (N, C, C).

    ``G[n] = F F^T`` with ``F = features[n].reshape(C, H*W)``, divided by ``C*H*W``
    when ``normalize`` (the assignment's normalisation). Computes one block triangle
    and mirrors it (C >= 64, H*W >= 1024), with the scale folded into the GEMM; the
    backward ``dF = s (dG + dG^T) F`` is one GEMM per image. float32 / float64.
    """
    return _ops.gram_forward(features, normalize)


def cpu_isa() -> str:
    """The instruction set (DEFAULT, AVX2 or AVX512) the CPU pointwise kernels use."""
    return _ops._cpu_isa()


@contextlib.contextmanager
def gemm_backend(name: str) -> Iterator[None]:
    """Select the GEMM engine of the CPU time loops inside a ``with`` block.

    ``"auto"`` (default): oneDNN's GEMM for float32 steps large enough to pay for
    its call overhead, BLAS otherwise; ``"blas"``: always the BLAS path (batch
    split across threads for the whole sequence); ``"onednn"``: always oneDNN
    (float32 only; float64 always uses BLAS). Results agree to rounding.
    """
    previous = _ops._set_gemm_backend(name)
    try:
        yield
    finally:
        _ops._set_gemm_backend(previous)
