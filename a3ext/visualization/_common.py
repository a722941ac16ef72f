"""Helpers shared by the visualization modules: argument checks and eval mode.

May import: no other a3ext module; outside a3ext: torch.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run ``model`` in eval mode (dropout off, BatchNorm on running statistics)
    and restore each module's previous ``training`` flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


_NO_MODEL = object()


def check_images(X, fn: str, name: str = "X", batch: int | None = None, model=_NO_MODEL) -> torch.Tensor:
    """``X`` must be a finite floating (N, 3, H, W) tensor (N == ``batch`` when given)
    and, when ``model`` is given, of the dtype of the model's parameters (which must be
    an ``nn.Module``)."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor of shape (N, 3, H, W), got {type(X).__name__}")
    if X.dim() != 4 or X.shape[1] != 3 or (batch is not None and X.shape[0] != batch):
        want = f"({batch}, 3, H, W)" if batch is not None else "(N, 3, H, W)"
        raise ValueError(f"{fn}: {name} must be a {want} tensor of preprocessed images, "
                         f"got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise TypeError(f"{fn}: {name} must be a floating-point tensor, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"{fn}: {name} is an empty batch (shape {tuple(X.shape)})")
    if X.device.type != "meta":
        bad = int((~torch.isfinite(X.detach())).sum())
        if bad:
            # a NaN score gives all-zero gradients through ReLU-like layers: a "blank" map, not an error
            raise ValueError(f"{fn}: {name} must hold finite pixel values, but {bad} of its {X.numel()} "
                             f"values are NaN or infinite")
    if model is not _NO_MODEL:
        if not isinstance(model, nn.Module):
            raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        autocast = torch.is_autocast_enabled(X.device.type) if X.device.type != "meta" else False
        if dtype is not None and X.dtype != dtype and not autocast:
            raise TypeError(f"{fn}: {name} has dtype {X.dtype} but the model's parameters are {dtype}; "
                            f"convert one of them (e.g. {name}.to({dtype}))")
    return X


def check_learning_rate(learning_rate, fn: str) -> None:
    """``learning_rate`` must be a positive finite number (int or float)."""
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"{fn}: learning_rate must be a positive finite number, got {learning_rate!r}")


def check_targets(y, n: int, fn: str, name: str = "y", num_classes: int | None = None) -> torch.Tensor:
    """``y``: an int, a sequence of ints or an integer tensor with ``n`` entries, as
    a (n,) int64 tensor; every entry in ``[0, num_classes)`` when that is given."""
    if isinstance(y, bool):
        raise TypeError(f"{fn}: {name} must be class indices (int, sequence of int or integer tensor), got bool")
    if isinstance(y, int):
        y = [y]
    if isinstance(y, torch.Tensor):
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(f"{fn}: {name} must be an integer tensor of class indices, got dtype {y.dtype}")
        t = y.reshape(-1).to(torch.int64)
    elif isinstance(y, Sequence) and all(isinstance(v, int) and not isinstance(v, bool) for v in y):
        t = torch.tensor(list(y), dtype=torch.int64)
    else:
        raise TypeError(f"{fn}: {name} must be class indices (int, sequence of int or integer tensor), "
                        f"got {type(y).__name__}")
    if t.numel() != n:
        raise ValueError(f"{fn}: {name} must hold one class index per image ({n}), got {t.numel()}")
    if num_classes is not None:
        bad = [int(v) for v in t if not 0 <= int(v) < num_classes]
        if bad:
            raise ValueError(f"{fn}: {name} must be class indices in [0, {num_classes}), got {bad}")
    return t


def pixel_scale(model: nn.Module, like: torch.Tensor) -> torch.Tensor | None:
    """(1, 3, 1, 1) factor turning a difference of preprocessed images into 0-255
    pixel units (``255 * model.pixel_std``), or ``None`` for a model without
    ``pixel_std``."""
    std = getattr(model, "pixel_std", None)
    if not isinstance(std, torch.Tensor):
        return None
    return (std * 255.0).to(like.device, like.dtype)


def pixel_bounds(model: nn.Module, like: torch.Tensor):
    """``model.pixel_range`` as (low, high) tensors like ``like``, or ``None``."""
    rng = getattr(model, "pixel_range", None)
    if rng is None:
        return None
    low, high = rng
    return low.to(like.device, like.dtype), high.to(like.device, like.dtype)
