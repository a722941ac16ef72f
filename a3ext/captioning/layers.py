"""The captioning model's non-recurrent layers: word embedding, temporal affine and
the temporal softmax loss.

These three are the one place the captioning code calls them from, so a fused C++
implementation can replace them here without touching the model. Semantics are the
assignment's (``a3ext.reference.word_embedding_forward``,
``temporal_affine_forward``, ``temporal_softmax_loss``), tested against it in
float64, forward and backward.

May import: no other a3ext module; outside a3ext: torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["word_embedding", "temporal_affine", "temporal_softmax_loss"]


def _check_ndim(fn: str, name: str, t: Tensor, shape_str: str, ndim: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, but got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(
            f"{fn}: expected {name} of shape {shape_str}, but got a {t.dim()}-D tensor of shape "
            f"{list(t.shape)}"
        )


def word_embedding(x: Tensor, W: Tensor) -> Tensor:
    """Word vectors of integer indices: x (N, T) in [0, V), W (V, D) -> (N, T, D).

    The gradient w.r.t. W accumulates repeated indices (as ``np.add.at``).
    """
    fn = "word_embedding"
    _check_ndim(fn, "x", x, "(N, T)", 2)
    _check_ndim(fn, "W", W, "(V, D)", 2)
    if x.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"word_embedding: x must be an integer tensor (int64/int32), but got {x.dtype}")
    return F.embedding(x, W)


def temporal_affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """An affine layer at every time step: x (N, T, D), w (D, M), b (M,) -> x @ w + b (N, T, M)."""
    fn = "temporal_affine"
    _check_ndim(fn, "x", x, "(N, T, D)", 3)
    _check_ndim(fn, "w", w, "(D, M)", 2)
    _check_ndim(fn, "b", b, "(M,)", 1)
    N, T, D = x.shape
    if w.shape[0] != D or b.shape[0] != w.shape[1]:
        raise ValueError(
            f"temporal_affine: expected w of shape (D, M) with D = {D} (from x) and b of shape (M,) "
            f"with M = w.shape[1], but got w {list(w.shape)} and b {list(b.shape)}"
        )
    return torch.addmm(b, x.reshape(N * T, D), w).view(N, T, w.shape[1])


def temporal_softmax_loss(x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """Softmax cross-entropy summed over time steps and unmasked entries, divided by N.

    x (N, T, V) scores, y (N, T) integer targets, mask (N, T) (boolean, or numbers
    used as weights) -> scalar ``-sum_{n,t} mask[n,t] log softmax(x[n,t])[y[n,t]] / N``.
    The division is by N, not by the number of unmasked entries; N = 0 gives 0.
    """
    fn = "temporal_softmax_loss"
    _check_ndim(fn, "x", x, "(N, T, V)", 3)
    _check_ndim(fn, "y", y, "(N, T)", 2)
    _check_ndim(fn, "mask", mask, "(N, T)", 2)
    N, T, V = x.shape
    if tuple(y.shape) != (N, T) or tuple(mask.shape) != (N, T):
        raise ValueError(
            f"temporal_softmax_loss: expected y and mask of shape (N, T) = {[N, T]}, but got "
            f"y {list(y.shape)} and mask {list(mask.shape)}"
        )
    nll = F.cross_entropy(x.reshape(N * T, V), y.reshape(N * T).long(), reduction="none")
    return (nll * mask.reshape(N * T).to(x.dtype)).sum() / max(N, 1)
