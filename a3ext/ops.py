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
import operator
import re
from typing import Iterator, Optional

import torch
from torch import Tensor

__all__ = ["rnn", "rnn_step", "lstm", "lstm_step", "rnn_packed", "lstm_packed", "pack_lengths", "gram",
           "cpu_isa", "gemm_backend"]

_ops = torch.ops.a3ext


# ---------------------------------------------------------------------------
# Validation shared by the fake kernels (the C++ kernels perform the same
# checks with the same messages, in the same order, for eager calls: see
# csrc/checks.h and csrc/rnn_common.h).
_INT64_MAX = 2 ** 63 - 1


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype)


def _check_tensor(op: str, t, name: str, optional: bool = False) -> None:
    """t is given (not None) and a dense strided tensor (None allowed when optional)."""
    if t is None:
        if optional:
            return
        raise TypeError(f"{op}: {name} is required, got None")
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(t).__name__}")
    if t.layout != torch.strided or t.is_nested:
        kind = "nested" if t.is_nested else str(t.layout)
        raise TypeError(f"{op}: {name} must be a dense tensor (torch.strided layout), but got a {kind} tensor")


def _check_tensors(op: str, *named, optional: tuple = ()) -> None:
    """_check_tensor for every (tensor, name) of an op, in the schema's order: first,
    so that None and sparse / mkldnn / nested tensors get this error whatever else
    is wrong."""
    for t, name in named:
        _check_tensor(op, t, name, name in optional)


def _nbytes_overflow(shape, itemsize: int) -> bool:
    if any(s == 0 for s in shape):
        return False
    n = itemsize
    for s in shape:
        n *= s
    return n > _INT64_MAX


def _check_output_size(op, what, shape, shape_str, like, from_):
    """An output (or work buffer) whose size in bytes int64 can hold."""
    if _nbytes_overflow(shape, like.element_size()):
        raise ValueError(
            f"{op}: {what} of shape {shape_str} = {list(shape)} would be too large: its size in bytes "
            f"overflows int64; expected smaller sizes, but got them from {from_}"
        )


def _check_gate_width(op, H, gate_mult):
    if gate_mult != 1 and H > _INT64_MAX // gate_mult:
        raise ValueError(f"{op}: expected h0.size(1) = H with 4H < 2**63, but got H = {H}")


def _check_same(op: str, ref: Tensor, ref_name: str, t: Tensor, name: str) -> None:
    _check_tensor(op, t, name)
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


def _check_shape(op: str, t: Tensor, name: str, expected: tuple, expected_str: str, note: str = "") -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(
            f"{op}: expected {name} of shape {expected_str} = {list(expected)}, "
            f"but got {list(t.shape)}{note}"
        )


def _check_ndim(op: str, t: Tensor, name: str, shape_str: str, ndim: int) -> None:
    if t.dim() != ndim:
        raise ValueError(
            f"{op}: expected {name} of shape {shape_str}, but got a {t.dim()}-D tensor of shape "
            f"{list(t.shape)}"
        )


_NO_BIAS = object()  # the backward ops take no bias


def _check_float(op, t, name):
    _check_tensor(op, t, name)
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{op}: {name} must be torch.float32 or torch.float64, but got {t.dtype}")


def _check_forward(op, x, h0, Wx, Wh, b, gate_mult):
    """b: the bias, or _NO_BIAS for the backward ops."""
    has_b = b is not _NO_BIAS
    _check_tensors(op, (x, "x"), (h0, "h0"), (Wx, "Wx"), (Wh, "Wh"))
    if has_b:
        _check_tensor(op, b, "b")
    _check_float(op, x, "x")
    _check_ndim(op, x, "x", "(N, T, D)", 3)
    _check_ndim(op, h0, "h0", "(N, H)", 2)
    for t, name in ((h0, "h0"), (Wx, "Wx"), (Wh, "Wh"), (b, "b")):
        if t is not _NO_BIAS:
            _check_same(op, x, "x", t, name)
    N, T, D = x.shape
    H = h0.shape[1]
    if h0.shape[0] != N:
        raise ValueError(
            f"{op}: expected h0 of shape (N, H) with N = {N} (from x), but got {list(h0.shape)}"
        )
    _check_gate_width(op, H, gate_mult)
    _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult)
    _check_output_size(op, "the gates" if gate_mult == 4 else "the output h", (N, T, gate_mult * H),
                       "(N, T, 4H)" if gate_mult == 4 else "(N, T, H)", x, "x and h0")
    return N, T, D, H


def _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult):
    G = gate_mult * H
    four = "4H" if gate_mult == 4 else "H"
    _check_shape(op, Wx, "Wx", (D, G), f"(D, {four})", " (D from x, H from h0)")
    _check_shape(op, Wh, "Wh", (H, G), f"(H, {four})", " (H from h0)")
    if b is not _NO_BIAS:
        _check_shape(op, b, "b", (G,), f"({four},)", " (H from h0)")


def _check_like(op, t, name, x, shape, shape_str):
    """t has x's dtype and device and the given shape."""
    _check_same(op, x, "x", t, name)
    note = {"(N, H)": " (N from x, H from h0)", "(B, H)": " (B, H from h0)"}.get(
        shape_str, " (P from x, H from h0)" if shape_str[1] == "P" else " (N, T from x, H from h0)")
    _check_shape(op, t, name, shape, shape_str, note)


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
    _check_tensors(op, (dh, "dh"), (x, "x"), (h0, "h0"), (Wx, "Wx"), (Wh, "Wh"), (h, "h"))
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, _NO_BIAS, 1)
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
    _check_tensors(op, (x, "x"), (h0, "h0"), (c0, "c0"), (Wx, "Wx"), (Wh, "Wh"), (b, "b"))
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, b, 4)
    _check_like(op, c0, "c0", x, (N, H), "(N, H)")
    return _empty_like_shape(x, N, T, H), _empty_like_shape(x, N, T, H), _empty_like_shape(x, N, T, 4 * H)


@torch.library.register_fake("a3ext::lstm_backward")
def _lstm_backward_fake(dh, dc, x, h0, c0, Wx, Wh, h, c, gates):
    op = "a3ext.lstm_backward"
    _check_tensors(op, (dh, "dh"), (dc, "dc"), (x, "x"), (h0, "h0"), (c0, "c0"), (Wx, "Wx"), (Wh, "Wh"), (h, "h"),
                   (c, "c"), (gates, "gates"), optional=("dh", "dc"))
    N, T, D, H = _check_forward(op, x, h0, Wx, Wh, _NO_BIAS, 4)
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
    """The checks of csrc/rnn_common.h's check_packed_inputs up to the values of
    batch_sizes, which only the real kernel sees (fake tensors hold none)."""
    _check_tensors(op, (x, "x"), (batch_sizes, "batch_sizes"), (h0, "h0"), (Wx, "Wx"), (Wh, "Wh"))
    if b is not _NO_BIAS:
        _check_tensor(op, b, "b")
    _check_float(op, x, "x")
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
        if t is not _NO_BIAS:
            _check_same(op, x, "x", t, name)
    P, D = x.shape
    B, H = h0.shape
    _check_gate_width(op, H, gate_mult)
    _check_weight_shapes(op, Wx, Wh, b, D, H, gate_mult)
    _check_output_size(op, "the gates" if gate_mult == 4 else "the output h", (P, gate_mult * H),
                       "(P, 4H)" if gate_mult == 4 else "(P, H)", x, "x and h0")
    return P, B, D, H


@torch.library.register_fake("a3ext::rnn_packed_forward")
def _rnn_packed_forward_fake(x, batch_sizes, h0, Wx, Wh, b):
    P, B, D, H = _check_packed("a3ext.rnn_packed", x, batch_sizes, h0, Wx, Wh, b, 1)
    return _empty_like_shape(x, P, H)


@torch.library.register_fake("a3ext::rnn_packed_backward")
def _rnn_packed_backward_fake(dh, x, batch_sizes, h0, Wx, Wh, h):
    op = "a3ext.rnn_packed_backward"
    _check_tensors(op, (dh, "dh"), (x, "x"), (batch_sizes, "batch_sizes"), (h0, "h0"), (Wx, "Wx"), (Wh, "Wh"),
                   (h, "h"))
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, _NO_BIAS, 1)
    _check_like(op, h, "h", x, (P, H), "(P, H)")
    _check_like(op, dh, "dh", x, (P, H), "(P, H)")
    return (_empty_like_shape(x, P, D), _empty_like_shape(x, B, H), _empty_like_shape(x, D, H),
            _empty_like_shape(x, H, H), _empty_like_shape(x, H))


@torch.library.register_fake("a3ext::lstm_packed_forward")
def _lstm_packed_forward_fake(x, batch_sizes, h0, c0, Wx, Wh, b):
    op = "a3ext.lstm_packed"
    _check_tensors(op, (x, "x"), (batch_sizes, "batch_sizes"), (h0, "h0"), (c0, "c0"), (Wx, "Wx"), (Wh, "Wh"),
                   (b, "b"))
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, b, 4)
    _check_like(op, c0, "c0", x, (B, H), "(B, H)")
    return _empty_like_shape(x, P, H), _empty_like_shape(x, P, H), _empty_like_shape(x, P, 4 * H)


@torch.library.register_fake("a3ext::lstm_packed_backward")
def _lstm_packed_backward_fake(dh, dc, x, batch_sizes, h0, c0, Wx, Wh, h, c, gates):
    op = "a3ext.lstm_packed_backward"
    _check_tensors(op, (dh, "dh"), (dc, "dc"), (x, "x"), (batch_sizes, "batch_sizes"), (h0, "h0"), (c0, "c0"),
                   (Wx, "Wx"), (Wh, "Wh"), (h, "h"), (c, "c"), (gates, "gates"), optional=("dh", "dc"))
    P, B, D, H = _check_packed(op, x, batch_sizes, h0, Wx, Wh, _NO_BIAS, 4)
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
    _check_float(op, features, "features")
    _check_ndim(op, features, "features", "(N, C, H, W)", 4)
    N, C = features.shape[:2]
    _check_output_size(op, "the output G", (N, C, C), "(N, C, C)", features, "features")


@torch.library.register_fake("a3ext::gram_forward")
def _gram_forward_fake(features, normalize=True):
    _check_features("a3ext.gram", features)
    N, C = features.shape[:2]
    return _empty_like_shape(features, N, C, C)


@torch.library.register_fake("a3ext::gram_backward")
def _gram_backward_fake(grad, features, normalize):
    op = "a3ext.gram_backward"
    _check_tensors(op, (grad, "grad"), (features, "features"))
    _check_features(op, features)
    _check_same(op, features, "features", grad, "grad")
    N, C = features.shape[:2]
    _check_shape(op, grad, "grad", (N, C, C), "(N, C, C)", " (N, C from features)")
    return torch.empty(features.shape, dtype=features.dtype, device=features.device)


# ---------------------------------------------------------------------------
# Plain-torch composites: the same functions written with differentiable torch
# ops (gate order i, f, o, g). They are the differentiable path of every
# derivative beyond the first (double backward, forward mode, batched
# gradients); the first derivative runs the C++ backward ops.
def _rnn_composite(x, h0, Wx, Wh, b):
    xw = x @ Wx + b
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(xw[:, t] + h @ Wh)
        hs.append(h)
    return torch.stack(hs, 1) if hs else xw


def _lstm_cell(a, c):
    H = c.shape[-1]
    i, f, o = torch.sigmoid(a[:, : 3 * H]).chunk(3, 1)
    c = f * c + i * torch.tanh(a[:, 3 * H:])
    return o * torch.tanh(c), c


def _lstm_composite(x, h0, c0, Wx, Wh, b):
    xw = x @ Wx + b
    h, c, hs, cs = h0, c0, [], []
    for t in range(x.shape[1]):
        h, c = _lstm_cell(xw[:, t] + h @ Wh, c)
        hs.append(h)
        cs.append(c)
    if not hs:
        H = h0.shape[-1]
        return xw[..., :H], xw[..., H: 2 * H]
    return torch.stack(hs, 1), torch.stack(cs, 1)


def _rnn_packed_composite(x, batch_sizes, h0, Wx, Wh, b):
    xw = x @ Wx + b
    h, hs, start = h0, [], 0
    for n in batch_sizes.tolist():
        h = torch.tanh(xw[start: start + n] + h[:n] @ Wh)
        hs.append(h)
        start += n
    return torch.cat(hs) if hs else xw


def _lstm_packed_composite(x, batch_sizes, h0, c0, Wx, Wh, b):
    xw = x @ Wx + b
    h, c, hs, cs, start = h0, c0, [], [], 0
    for n in batch_sizes.tolist():
        h, c = _lstm_cell(xw[start: start + n] + h[:n] @ Wh, c[:n])
        hs.append(h)
        cs.append(c)
        start += n
    if not hs:
        H = h0.shape[-1]
        return xw[..., :H], xw[..., H: 2 * H]
    return torch.cat(hs), torch.cat(cs)


def _gram_composite(features, normalize=True):
    F = features.flatten(2)
    G = F @ F.transpose(1, 2)
    scale = F.shape[1] * F.shape[2]
    return G / scale if normalize and scale > 0 else G


# ---------------------------------------------------------------------------
# Batching rules (vmap) of the forward ops: the vmapped dimension folds into
# the op's own batch dimension (N for the padded sequence ops, the sequence
# index for the packed ones, N for gram), so one C++ call serves the whole
# vmapped batch. When the weights themselves are vmapped (an ensemble of
# models) nothing folds, and the rule runs the op once per slice.
def _leading(t: Tensor, dim: Optional[int], size: int) -> Tensor:
    """t with its vmapped dimension first; an unbatched t expanded to size."""
    return t.unsqueeze(0).expand(size, *t.shape) if dim is None else t.movedim(dim, 0)


def _vmap_by_slices(forward, info, in_dims, args):
    outs = [forward(*(a if d is None else a.select(d, i) for a, d in zip(args, in_dims)))
            for i in range(info.batch_size)]
    if isinstance(outs[0], Tensor):
        return torch.stack(outs), 0
    return tuple(torch.stack(o) for o in zip(*outs)), (0,) * len(outs[0])


def _fold_padded(info, in_dims, args, n_state, forward):
    """x (N, T, D) and the n_state initial states (N, H) fold (B, N) -> B*N."""
    B = info.batch_size
    x, states = _leading(args[0], in_dims[0], B), args[1: 1 + n_state]
    N = x.shape[1]
    x = x.flatten(0, 1)
    states = [_leading(s, d, B).flatten(0, 1) for s, d in zip(states, in_dims[1: 1 + n_state])]
    out = forward(x, *states, *args[1 + n_state:])
    outs = (out,) if isinstance(out, Tensor) else out
    outs = tuple(o.reshape(B, N, *o.shape[1:]) for o in outs)
    return (outs[0], 0) if isinstance(out, Tensor) else (outs, (0,) * len(outs))


def _fold_packed(info, in_dims, args, n_state, forward):
    """Copy k of packed sequence s becomes sequence s*B + k: each step's rows
    (B, b_t, D) -> (b_t*B, D), which is (B, P, D) -> (P, B, D) -> (P*B, D)."""
    B = info.batch_size
    if in_dims[1] is not None:
        raise ValueError("a3ext packed ops: vmap over batch_sizes is not supported")
    x, batch_sizes, states = _leading(args[0], in_dims[0], B), args[1], args[2: 2 + n_state]
    P = x.shape[1]
    x = x.transpose(0, 1).flatten(0, 1)
    states = [_leading(s, d, B).transpose(0, 1).flatten(0, 1) for s, d in zip(states, in_dims[2: 2 + n_state])]
    out = forward(x, batch_sizes * B, *states, *args[2 + n_state:])
    outs = (out,) if isinstance(out, Tensor) else out
    outs = tuple(o.reshape(P, B, *o.shape[1:]) for o in outs)
    return (outs[0], 1) if isinstance(out, Tensor) else (outs, (1,) * len(outs))


def _fold_gram(info, in_dims, args, forward):
    B = info.batch_size
    features = _leading(args[0], in_dims[0], B)
    G = forward(features.flatten(0, 1), *args[1:])
    return G.reshape(B, features.shape[1], *G.shape[1:]), 0


# ---------------------------------------------------------------------------
# Autograd. Every op is a torch.autograd.Function (setup_context style, with
# jvp and vmap staticmethods), which is what torch.func's transforms and
# forward mode accept; the dispatcher ops' autograd kernel applies the same
# Function (torch.compile traces the dispatcher op).
#
# First derivative (backward with grad mode off, the ordinary .backward()):
# the C++ backward op. Under create_graph=True / torch.func.grad the backward
# is itself a Function (RnnVjp, LstmVjp, ...) whose forward is still that C++
# op and whose own derivatives, forward mode and batching rule (per-sample
# gradients) come from torch.func applied to the plain-torch composite, so
# every higher derivative is exact.
class _OpSpec:
    """One op: its dispatcher call, C++ backward, composite and layout."""

    def __init__(self, name, forward, backward, composite, n_inputs, diff, n_outputs, n_diff_outputs,
                 fold, weights=(), backward_takes_none=False):
        self.name = name
        self.forward = forward  # (*inputs) -> output or tuple of outputs
        self.backward = backward  # (grads, inputs, outputs) -> gradients of the diff inputs
        self.composite = composite  # (*inputs) -> differentiable outputs (one tensor or a tuple)
        self.n_inputs, self.diff = n_inputs, diff  # diff: indices of differentiable inputs
        self.n_outputs, self.n_diff_outputs = n_outputs, n_diff_outputs  # gates are not differentiable
        self.fold = fold  # (info, in_dims, args, forward) -> (outputs, out_dims), one call
        self.weights = weights  # inputs that must be unbatched for fold
        self.backward_takes_none = backward_takes_none
        self.class_name = "".join(w.capitalize() for w in name.split(".")[1].split("_"))  # LstmPacked

    def with_diff(self, inputs, diff_values):
        full = list(inputs)
        for i, v in zip(self.diff, diff_values):
            full[i] = v
        return full

    def composite_of_diff(self, inputs):
        """The composite as a function of the differentiable inputs only."""
        return lambda *d: self.composite(*self.with_diff(inputs, d))

    def composite_vjp(self, grads, inputs):
        """Gradients of the diff inputs through the composite (differentiable)."""
        _, pullback = torch.func.vjp(self.composite_of_diff(inputs), *(inputs[i] for i in self.diff))
        return pullback(grads[0] if self.n_diff_outputs == 1 else tuple(grads))


def _jvp(f, primals, tangents):
    """torch.func.jvp(f, primals, tangents)[1] computed with two reverse passes
    (the VJP is linear in its cotangent u, and the VJP of u -> VJP(u) applied to
    the tangents is J t), because forward AD cannot nest inside the jvp of an
    autograd.Function run under torch.autograd.forward_ad."""
    out, pullback = torch.func.vjp(f, *primals)
    single = isinstance(out, Tensor)
    u = torch.zeros_like(out) if single else tuple(torch.zeros_like(o) for o in out)
    _, pullback_of_pullback = torch.func.vjp(pullback, u)
    (t_out,) = pullback_of_pullback(tuple(tangents))
    return t_out


_TENSOR = object()  # marks a tensor's slot in ctx.saved_args


def _save_args(ctx, args) -> None:
    tensors = [a for a in args if isinstance(a, Tensor)]
    ctx.save_for_backward(*tensors)
    ctx.save_for_forward(*tensors)
    ctx.saved_args = tuple(_TENSOR if isinstance(a, Tensor) else a for a in args)


def _saved_args(ctx) -> list:
    tensors = iter(ctx.saved_tensors)
    return [next(tensors) if a is _TENSOR else a for a in ctx.saved_args]


def _materialize(values, like):
    return [torch.zeros_like(o) if v is None else v for v, o in zip(values, like)]


def _function_class(name, doc, **staticmethods):
    """A torch.autograd.Function subclass named name (its grad_fn: nameBackward)."""
    body = {k: staticmethod(f) for k, f in staticmethods.items()}
    return type(name, (torch.autograd.Function,), {"__doc__": doc, "__module__": __name__, **body})


def _first_derivative_function(spec: _OpSpec):
    """The backward of one op as a Function of (*grads, *inputs, *outputs)
    returning the gradients of the differentiable inputs."""
    n_g, n_in = spec.n_diff_outputs, spec.n_inputs

    def split(args):
        return list(args[:n_g]), list(args[n_g: n_g + n_in]), list(args[n_g + n_in:])

    def as_function_of_primals(inputs):
        """(*grads, *diff inputs) -> diff-input gradients, through the composite."""
        return lambda *p: tuple(spec.composite_vjp(p[:n_g], spec.with_diff(inputs, p[n_g:])))

    def primals(grads, inputs):
        return (*grads, *(inputs[i] for i in spec.diff))

    def forward(*args):
        grads, inputs, outputs = split(args)
        return tuple(spec.backward(grads, inputs, outputs))

    def setup_context(ctx, inputs, output):
        _save_args(ctx, inputs)

    def backward(ctx, *ggrads):
        grads, inputs, outputs = split(_saved_args(ctx))
        _, pullback = torch.func.vjp(as_function_of_primals(inputs), *primals(grads, inputs))
        d = pullback(tuple(ggrads))
        return (*d[:n_g], *spec.with_diff([None] * n_in, d[n_g:]), *([None] * len(outputs)))

    def jvp(ctx, *tangents):
        grads, inputs, _ = split(_saved_args(ctx))
        t_grads, t_inputs, _ = split(tangents)
        p = primals(grads, inputs)
        t = _materialize((*t_grads, *(t_inputs[i] for i in spec.diff)), p)
        return _jvp(as_function_of_primals(inputs), p, t)

    def vmap(info, in_dims, *args):
        grads, inputs, _ = split(args)
        g_dims, in_dims_inputs, _ = split(in_dims)
        if any(d is not None for i, d in enumerate(in_dims_inputs) if i not in spec.diff):
            raise ValueError(f"{spec.name}: vmap over a non-differentiable input is not supported")
        dims = (*g_dims, *(in_dims_inputs[i] for i in spec.diff))
        fn = as_function_of_primals(inputs)
        if all(d is None for d in dims):  # only the unused forward outputs are batched
            return fn(*primals(grads, inputs)), (None,) * len(spec.diff)
        return torch.vmap(fn, in_dims=dims)(*primals(grads, inputs)), (0,) * len(spec.diff)

    return _function_class(f"{spec.class_name}Vjp", f"The first derivative of {spec.name}.", forward=forward,
                           setup_context=setup_context, backward=backward, jvp=jvp, vmap=vmap)


def _op_function(spec: _OpSpec):
    """The Function of one op."""
    first_derivative = _first_derivative_function(spec)
    n_in = spec.n_inputs

    def setup_context(ctx, inputs, output):
        outputs = (output,) if isinstance(output, Tensor) else tuple(output)
        if len(outputs) > spec.n_diff_outputs:
            ctx.mark_non_differentiable(*outputs[spec.n_diff_outputs:])
        # Unused outputs (an LSTM's c) get None: the C++ backward skips them.
        ctx.set_materialize_grads(False)
        _save_args(ctx, (*inputs, *outputs))

    def backward(ctx, *grads):
        args = _saved_args(ctx)
        inputs, outputs = args[:n_in], args[n_in:]
        grads = grads[: spec.n_diff_outputs]
        if torch.is_grad_enabled():  # create_graph=True or a torch.func transform
            d = first_derivative.apply(*_materialize(grads, outputs), *inputs, *outputs)
        else:
            if not spec.backward_takes_none:
                grads = _materialize(grads, outputs)
            d = spec.backward(grads, inputs, outputs)
        return tuple(spec.with_diff([None] * n_in, d))

    def forward(*inputs):
        with torch._C._AutoDispatchBelowAutograd():  # straight to the kernel
            return spec.forward(*inputs)

    def jvp(ctx, *tangents):
        inputs = _saved_args(ctx)[:n_in]
        p = [inputs[i] for i in spec.diff]
        t = _materialize([tangents[i] for i in spec.diff], p)
        out_t = _jvp(spec.composite_of_diff(inputs), p, t)
        out_t = (out_t,) if isinstance(out_t, Tensor) else tuple(out_t)
        if spec.n_outputs == 1:
            return out_t[0]
        return (*out_t, *([None] * (spec.n_outputs - spec.n_diff_outputs)))

    def vmap(info, in_dims, *inputs):
        # The rule applies the Function itself to the folded (or sliced) inputs,
        # so that transforms outside this vmap (grad of vmap) still see it.
        if all(in_dims[i] is None for i in spec.weights):
            return spec.fold(info, in_dims, inputs, function.apply)
        return _vmap_by_slices(function.apply, info, in_dims, inputs)

    function = _function_class(spec.class_name, f"{spec.name} as an autograd.Function.", forward=forward,
                               setup_context=setup_context, backward=backward, jvp=jvp, vmap=vmap)
    return function


_autograd_lib = torch.library.Library("a3ext", "IMPL")  # keeps the registrations below alive


def _apply(function, args):
    """function.apply(*args) without the transforms active: what
    torch.autograd.Function.apply does then, minus its per-call
    inspect.signature binding of default arguments (forward has none), which
    costs as much as the op on small inputs."""
    args = torch._functorch.utils.unwrap_dead_wrappers(args)
    return super(torch.autograd.Function, function).apply(*args)


def _differentiated(args) -> bool:
    """Whether autograd records this call: grad mode on and an argument that
    requires grad, or an argument with a forward-mode tangent (a dual tensor)."""
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return True
    return torch.autograd.forward_ad._current_level >= 0 and any(  # (a private flag, no public one)
        isinstance(a, Tensor) and torch.autograd.forward_ad.unpack_dual(a).tangent is not None for a in args)


def _bind(spec: _OpSpec):
    """The op's callable and the dispatcher op's autograd kernel, both through
    the op's Function. The callable applies the Function (torch.func's
    transforms see it) in eager mode; under torch.compile it calls the
    dispatcher op, since Dynamo does not trace a Function with a jvp
    staticmethod (the op's autograd kernel applies the same Function)."""
    function = _op_function(spec)
    opname = f"{spec.name.split('.')[1]}_forward"
    op = getattr(_ops, opname).default
    defaults = [a.default_value for a in op._schema.arguments]

    def autograd_kernel(keyset, *args):
        args = (*args, *defaults[len(args):])  # the dispatcher drops trailing default arguments
        if _differentiated(args):
            if torch._C._are_functorch_transforms_active():
                raise RuntimeError(
                    f"torch.ops.a3ext.{opname}: torch.func transforms (grad, vjp, jacrev, jvp) cannot "
                    f"differentiate the bare dispatcher op; call a3ext.ops.{spec.name.split('.')[1]}, "
                    f"which supports them")
            return _apply(function, args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    _autograd_lib.impl(opname, autograd_kernel, "Autograd", with_keyset=True)

    def apply(*inputs):
        if torch.compiler.is_compiling():
            return spec.forward(*inputs)
        if torch._C._are_functorch_transforms_active():
            return function.apply(*inputs)
        if _differentiated(inputs):
            return _apply(function, inputs)
        with torch._C._AutoDispatchBelowAutograd():  # inference: no autograd.Function overhead
            return spec.forward(*inputs)

    apply.function = function
    return apply


_Rnn = _bind(_OpSpec(
    "a3ext.rnn", _ops.rnn_forward,
    lambda g, i, o: _ops.rnn_backward(g[0], *i[:4], o[0]),
    _rnn_composite, n_inputs=5, diff=(0, 1, 2, 3, 4), n_outputs=1, n_diff_outputs=1,
    fold=lambda info, dims, args, f: _fold_padded(info, dims, args, 1, f), weights=(2, 3, 4)))
_Lstm = _bind(_OpSpec(
    "a3ext.lstm", _ops.lstm_forward,
    lambda g, i, o: _ops.lstm_backward(*g, *i[:5], *o),
    _lstm_composite, n_inputs=6, diff=(0, 1, 2, 3, 4, 5), n_outputs=3, n_diff_outputs=2,
    fold=lambda info, dims, args, f: _fold_padded(info, dims, args, 2, f), weights=(3, 4, 5),
    backward_takes_none=True))
_RnnPacked = _bind(_OpSpec(
    "a3ext.rnn_packed", _ops.rnn_packed_forward,
    lambda g, i, o: _ops.rnn_packed_backward(g[0], *i[:5], o[0]),
    _rnn_packed_composite, n_inputs=6, diff=(0, 2, 3, 4, 5), n_outputs=1, n_diff_outputs=1,
    fold=lambda info, dims, args, f: _fold_packed(info, dims, args, 1, f), weights=(3, 4, 5)))
_LstmPacked = _bind(_OpSpec(
    "a3ext.lstm_packed", _ops.lstm_packed_forward,
    lambda g, i, o: _ops.lstm_packed_backward(*g, *i[:6], *o),
    _lstm_packed_composite, n_inputs=7, diff=(0, 2, 3, 4, 5, 6), n_outputs=3, n_diff_outputs=2,
    fold=lambda info, dims, args, f: _fold_packed(info, dims, args, 2, f), weights=(4, 5, 6),
    backward_takes_none=True))
_Gram = _bind(_OpSpec(
    "a3ext.gram", _ops.gram_forward,
    lambda g, i, o: (_ops.gram_backward(g[0], *i),),
    _gram_composite, n_inputs=2, diff=(0,), n_outputs=1, n_diff_outputs=1,
    fold=lambda info, dims, args, f: _fold_gram(info, dims, args, f)))


# ---------------------------------------------------------------------------
# Public API
#
# Every bad call raises one error naming the op, the argument, what was
# expected and what was given, the same in eager mode and under FakeTensorMode
# / torch.compile: the public functions check here only what Python itself
# touches (an argument that is not a tensor: None, a list, a numpy array); the
# rest is checked by the C++ kernels, whose CompositeExplicitAutograd
# registration (csrc/a3ext.cpp) also answers sparse, mkldnn, quantized and
# nested tensors and devices without kernels, and by the fake kernels above,
# with the same messages.
def _not_tensors(op: str, names: tuple, values: tuple, optional: tuple = ()) -> TypeError:
    """The error for the first of values that is not a tensor (None: missing,
    unless the name is optional)."""
    for name, v in zip(names, values):
        if v is None and name in optional:
            continue
        if v is None:
            return TypeError(f"{op}: {name} is required, got None")
        if not isinstance(v, Tensor):
            return TypeError(f"{op}: {name} must be a torch.Tensor, but got {type(v).__name__}")
    raise AssertionError("every value is a tensor")


_RNN_ARGS = ("x", "h0", "Wx", "Wh", "b")


def rnn(x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """Vanilla tanh RNN over a whole sequence.

    x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,) -> h (N, T, H), the hidden
    state of every step (h0 excluded). float32 or float64; differentiable in every input.
    """
    if not (isinstance(x, Tensor) and isinstance(h0, Tensor) and isinstance(Wx, Tensor)
            and isinstance(Wh, Tensor) and isinstance(b, Tensor)):
        raise _not_tensors("a3ext.rnn", _RNN_ARGS, (x, h0, Wx, Wh, b))
    return _Rnn(x, h0, Wx, Wh, b)


def _check_step(op: str, x: Tensor, prev_h: Tensor) -> None:
    _check_tensor(op, x, "x")
    _check_tensor(op, prev_h, "prev_h")
    _check_ndim(op, x, "x", "(N, D)", 2)
    _check_ndim(op, prev_h, "prev_h", "(N, H)", 2)


def _step_error(e: Exception, op: str, step_op: str, renames: dict) -> Exception:
    """An error of the sequence op (a3ext.rnn) reworded for its step function
    (a3ext.rnn_step, h0 -> prev_h); other errors unchanged."""
    msg = str(e)
    if type(e) not in (TypeError, ValueError, RuntimeError, NotImplementedError) or not msg.startswith(op + ":"):
        return e
    msg = step_op + msg[len(op):]
    for old, new in renames.items():
        msg = re.sub(r"(?<![\w.])" + old + r"(?!\w)", new, msg)
    return type(e)(msg)


_RNN_STEP_ARGS = ("x", "prev_h", "Wx", "Wh", "b")


def rnn_step(x: Tensor, prev_h: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """One vanilla RNN step: x (N, D), prev_h (N, H) -> next_h = tanh(x Wx + prev_h Wh + b)."""
    if not (isinstance(x, Tensor) and isinstance(prev_h, Tensor) and isinstance(Wx, Tensor)
            and isinstance(Wh, Tensor) and isinstance(b, Tensor)):
        raise _not_tensors("a3ext.rnn_step", _RNN_STEP_ARGS, (x, prev_h, Wx, Wh, b))
    _check_step("a3ext.rnn_step", x, prev_h)
    try:
        return _Rnn(x.unsqueeze(1), prev_h, Wx, Wh, b).squeeze(1)
    except Exception as e:
        err = _step_error(e, "a3ext.rnn", "a3ext.rnn_step", {"h0": "prev_h"})
        if err is e:
            raise
        raise err from None


def lstm(
    x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor, c0: Optional[Tensor] = None
) -> Tensor:
    """LSTM over a whole sequence, gate order i, f, o, g.

    x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,), c0 (N, H) or None (zeros,
    as in the assignment) -> h (N, T, H). Differentiable in every input.
    """
    if not (isinstance(x, Tensor) and isinstance(h0, Tensor) and isinstance(Wx, Tensor)
            and isinstance(Wh, Tensor) and isinstance(b, Tensor) and (c0 is None or isinstance(c0, Tensor))):
        raise _not_tensors("a3ext.lstm", (*_RNN_ARGS, "c0"), (x, h0, Wx, Wh, b, c0), optional=("c0",))
    if c0 is None:
        c0 = h0.new_zeros(h0.shape) if h0.dim() == 2 else h0
    return _Lstm(x, h0, c0, Wx, Wh, b)[0]


_LSTM_STEP_ARGS = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")


def lstm_step(
    x: Tensor, prev_h: Tensor, prev_c: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor
) -> tuple[Tensor, Tensor]:
    """One LSTM step: x (N, D), prev_h (N, H), prev_c (N, H) -> (next_h, next_c)."""
    if not (isinstance(x, Tensor) and isinstance(prev_h, Tensor) and isinstance(prev_c, Tensor)
            and isinstance(Wx, Tensor) and isinstance(Wh, Tensor) and isinstance(b, Tensor)):
        raise _not_tensors("a3ext.lstm_step", _LSTM_STEP_ARGS, (x, prev_h, prev_c, Wx, Wh, b))
    _check_step("a3ext.lstm_step", x, prev_h)
    try:
        h, c, _ = _Lstm(x.unsqueeze(1), prev_h, prev_c, Wx, Wh, b)
    except Exception as e:
        err = _step_error(e, "a3ext.lstm", "a3ext.lstm_step", {"h0": "prev_h", "c0": "prev_c"})
        if err is e:
            raise
        raise err from None
    return h.squeeze(1), c.squeeze(1)


_PACKED_ARGS = ("x", "batch_sizes", "h0", "Wx", "Wh", "b")


def rnn_packed(x: Tensor, batch_sizes: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Tensor:
    """Vanilla tanh RNN over packed sequences (the layout of
    ``torch.nn.utils.rnn.PackedSequence``): no work is spent on padding.

    x (P, D): the rows of all sequences, time-major; step t holds ``batch_sizes[t]``
    rows, those of the first ``batch_sizes[t]`` sequences (sequences sorted by
    non-increasing length, see :func:`pack_lengths`). batch_sizes: int64 CPU (T,),
    non-increasing, each <= B. h0 (B, H) -> h (P, H) in the same packed order.
    Equal to :func:`rnn` on the padded batch at every valid position. CPU only.
    """
    if not (isinstance(x, Tensor) and isinstance(batch_sizes, Tensor) and isinstance(h0, Tensor)
            and isinstance(Wx, Tensor) and isinstance(Wh, Tensor) and isinstance(b, Tensor)):
        raise _not_tensors("a3ext.rnn_packed", _PACKED_ARGS, (x, batch_sizes, h0, Wx, Wh, b))
    return _RnnPacked(x, batch_sizes, h0, Wx, Wh, b)


def lstm_packed(
    x: Tensor, batch_sizes: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor, c0: Optional[Tensor] = None
) -> Tensor:
    """LSTM (gate order i, f, o, g) over packed sequences; see :func:`rnn_packed` for
    the layout. x (P, D), h0 / c0 (B, H) (c0 None = zeros) -> h (P, H). CPU only."""
    if not (isinstance(x, Tensor) and isinstance(batch_sizes, Tensor) and isinstance(h0, Tensor)
            and isinstance(Wx, Tensor) and isinstance(Wh, Tensor) and isinstance(b, Tensor)
            and (c0 is None or isinstance(c0, Tensor))):
        raise _not_tensors("a3ext.lstm_packed", (*_PACKED_ARGS, "c0"), (x, batch_sizes, h0, Wx, Wh, b, c0),
                           optional=("c0",))
    if c0 is None:
        c0 = h0.new_zeros(h0.shape) if h0.dim() == 2 else h0
    return _LstmPacked(x, batch_sizes, h0, c0, Wx, Wh, b)[0]


def _as_index(op: str, name: str, v) -> int:
    """v as a Python int: ints, numpy integers, integer 0-d tensors; not bool or float."""
    if not isinstance(v, bool) and not (isinstance(v, Tensor) and v.dtype == torch.bool):
        try:
            return operator.index(v)
        except TypeError:
            pass
    raise TypeError(f"{op}: {name} must be an int, but got {type(v).__name__} {v!r}")


def pack_lengths(lengths: Tensor, T: Optional[int] = None) -> tuple[Tensor, Tensor, Tensor]:
    """The packed layout of a padded batch whose sequence n has ``lengths[n]`` valid
    steps (``0 <= lengths[n] <= T``, T defaults to max(lengths)).

    lengths: a 1-D tensor of an integer dtype, or a sequence / numpy array of ints;
    T: an int. Returns ``(order, batch_sizes, index)``: ``order`` (B,) sorts the
    sequences by non-increasing length (stable), ``batch_sizes`` (max length,) int64 as
    :func:`rnn_packed` takes it, and ``index`` (P,) the position of every packed row
    in the row-major flattened (B, T) batch: ``packed = padded.reshape(B * T, -1)[index]``
    and ``padded.reshape(B * T, -1)[index] = packed`` unpacks.
    """
    op = "a3ext.pack_lengths"
    if lengths is None:
        raise TypeError(f"{op}: lengths is required, got None")
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise TypeError(f"{op}: lengths must be a 1-D tensor, array or sequence of ints, but got "
                            f"{type(lengths).__name__} ({e})") from None
        if lengths.numel() == 0:  # [] (which torch makes float32): no lengths at all
            lengths = lengths.to(torch.int64)
    if lengths.layout != torch.strided or lengths.is_nested:
        kind = "nested" if lengths.is_nested else str(lengths.layout)
        raise TypeError(f"{op}: lengths must be a dense tensor (torch.strided layout), but got a {kind} tensor")
    if lengths.dim() != 1:
        raise ValueError(f"{op}: expected lengths of shape (B,), but got {list(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool \
            or lengths.is_quantized:
        raise TypeError(f"{op}: lengths must have an integer dtype, but got {lengths.dtype}")
    if lengths.device.type == "meta":
        raise ValueError(f"{op}: lengths must hold values (a CPU or CUDA tensor), but got a tensor on meta")
    if T is not None:
        T = _as_index(op, "T", T)
        if T < 0:
            raise ValueError(f"{op}: T must be >= 0, but got T = {T}")
    lengths = lengths.to("cpu", torch.int64)
    B = lengths.shape[0]
    Tmax = int(lengths.max()) if B else 0
    T = Tmax if T is None else T
    if B and (int(lengths.min()) < 0 or Tmax > T):
        raise ValueError(f"{op}: lengths must be in [0, T = {T}], but got min {int(lengths.min())}, "
                         f"max {Tmax}")
    if B * T > _INT64_MAX:
        raise ValueError(f"{op}: expected B * T < 2**63 (the rows of the padded batch, which index counts), "
                         f"but got B = {B} and T = {T}")
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
    if not isinstance(features, Tensor):
        raise _not_tensors("a3ext.gram", ("features",), (features,))
    if normalize is not True and normalize is not False:
        if type(normalize).__name__ != "bool_":  # numpy's bool
            raise TypeError(f"a3ext.gram: normalize must be a bool, but got {type(normalize).__name__} {normalize!r}")
        normalize = bool(normalize)
    return _Gram(features, normalize)


def cpu_isa() -> str:
    """The instruction set (DEFAULT, AVX2 or AVX512) the CPU pointwise kernels use."""
    return _ops._cpu_isa()


@contextlib.contextmanager
def gemm_backend(name: str) -> Iterator[None]:
    """Select the GEMM engine of the CPU ops inside a ``with`` block.

    ``"auto"`` (default): the engine measured fastest on this machine, per op,
    dtype and shape class (a short trial of every available engine on the first
    call of each class, about 1-45 ms once on a 2-core machine (a work budget
    shrinks the heaviest classes' trials), cached for the process; see
    :func:`gemm_engine_choices`). ``"blas"``: the BLAS torch links (batch split
    across threads for the whole sequence); ``"onednn"``: oneDNN's GEMM (float32;
    float64 runs BLAS); ``"mkl"``: MKL's packed GEMM with the recurrent weights
    packed once per call (float32; float64 runs BLAS) and MKL's SYRK for the Gram
    forward (float32 and float64); ``"blas_batch"``: BLAS as one multi-threaded
    GEMM per time step on the whole batch (time-loop ops; the Gram op runs
    ``"blas"``); ``"own"``: a3ext's AVX-512 kernels, for the Gram forward and
    for the float64 recurrent step GEMMs of the RNN / LSTM ops (the weight packed
    once per call; CPUs whose ATen capability is AVX512; everything else runs
    ``"blas"``).
    Forcing ``"onednn"`` or ``"mkl"`` when this torch lacks it
    (:func:`gemm_engines`) raises for float32 work. Results agree to rounding,
    so with ``"auto"`` the last bits can differ between processes that measured
    differently. Under ``torch.use_deterministic_algorithms(True)`` ``"auto"``
    measures nothing and takes the choices loaded with
    :func:`load_gemm_engine_choices`, else ``"blas"``: a run then repeats bit for
    bit (on the same machine, threads and torch).
    """
    if not isinstance(name, str):
        raise TypeError(f"gemm_backend: name must be a str, one of 'auto', 'blas', 'onednn', 'mkl', "
                        f"'blas_batch', 'own', but got {type(name).__name__}")
    previous = _ops._set_gemm_backend(name)
    try:
        yield
    finally:
        _ops._set_gemm_backend(previous)


def gemm_engines() -> list[str]:
    """The GEMM engines this torch build and CPU provide ("blas" always; "onednn" with
    oneDNN; "mkl" when libtorch exports MKL's packed GEMM / SYRK, as on x86 wheels;
    "blas_batch"; "own" on AVX-512 CPUs: a3ext's Gram kernel and float64 step GEMM)."""
    return _ops._gemm_engines().split(",")


def gemm_engine_choices() -> dict[str, dict]:
    """What ``auto`` chose so far in this process: ``{shape class: {"engine": name,
    "calibration_ms": total trial time, "trial_ms": {engine: estimated time of the
    real call}}}``; the RNN / LSTM classes also give ``"trial": {"rows": R, "steps":
    S}``, the batch rows and the steps of the longer timed trial run."""
    out = {}
    for line in _ops._gemm_engine_choices().splitlines():
        parts = line.split(" ")
        # key words, then engine, calibration ms, name:ms ..., then rows=R steps=S (RNN / LSTM)
        shape = [p for p in parts if "=" in p]
        trials = [p for p in parts if ":" in p]
        head = parts[: len(parts) - len(trials) - len(shape)]
        key, engine, ms = " ".join(head[:-2]), head[-2], float(head[-1])
        out[key] = {"engine": engine, "calibration_ms": ms,
                    "trial_ms": {t.split(":")[0]: float(t.split(":")[1]) for t in trials}}
        if shape:
            out[key]["trial"] = {p.split("=")[0]: int(p.split("=")[1]) for p in shape}
    return out


def _machine_key() -> str:
    """CPU model, thread count and torch version: what an engine choice depends on."""
    model = "unknown-cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        import platform
        model = platform.processor() or platform.machine()
    return f"{model} | threads {torch.get_num_threads()} | torch {torch.__version__}"


def _engine_cache_path(path) -> "os.PathLike":
    import os
    from pathlib import Path
    if path is not None:
        return Path(path)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "a3ext" / "gemm_engines.json"


def save_gemm_engine_choices(path=None) -> None:
    """Store this process's measured engine choices on disk (default
    ``~/.cache/a3ext/gemm_engines.json``), keyed by CPU model, threads and torch
    version, so that later processes on the same kind of machine skip the trials."""
    import json
    import os
    p = _engine_cache_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        data = {}
    entry = data.setdefault(_machine_key(), {})
    entry.update({k: v["engine"] for k, v in gemm_engine_choices().items()})
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, p)


def load_gemm_engine_choices(path=None) -> int:
    """Adopt the engine choices stored for this machine (CPU model, threads, torch
    version) by :func:`save_gemm_engine_choices`; returns how many were loaded.
    A missing or unreadable file loads nothing."""
    import json
    try:
        data = json.loads(_engine_cache_path(path).read_text())
    except (OSError, ValueError):
        return 0
    entry = data.get(_machine_key(), {}) if isinstance(data, dict) else {}
    n = 0
    for key, engine in entry.items():
        if isinstance(engine, str) and engine in gemm_engines():
            _ops._set_gemm_engine_choice(key, engine)
            n += 1
    return n
