"""The losses of style transfer, with the assignment's names and formulas:
:func:`content_loss`, :func:`gram_matrix` (the C++ op :func:`a3ext.ops.gram`),
:func:`style_loss`, :func:`tv_loss`, and the softmax transform of style features
(:func:`softmax_activations`, Wang et al. 2021).

May import: torch and :mod:`a3ext.ops`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import ops

__all__ = ["content_loss", "gram_matrix", "style_loss", "tv_loss", "softmax_activations"]


def content_loss(content_weight: float, content_current: Tensor, content_original: Tensor) -> Tensor:
    """``content_weight * sum((content_current - content_original) ** 2)``: a scalar.

    ``content_current``, ``content_original``: features of the current and the content
    image at the content layer, (1, C_l, H_l, W_l) (any equal shapes).
    """
    if content_current.shape != content_original.shape:
        raise ValueError(f"content_loss: content_current has shape {tuple(content_current.shape)} but "
                         f"content_original has {tuple(content_original.shape)}; expected equal shapes")
    return content_weight * torch.sum((content_current - content_original) ** 2)


def gram_matrix(features: Tensor, normalize: bool = True) -> Tensor:
    """Gram matrices of (N, C, H, W) features: (N, C, C), ``G[n] = F_n F_n^T`` with
    ``F_n = features[n].reshape(C, H*W)``, divided by ``C*H*W`` when ``normalize``.
    The C++ op :func:`a3ext.ops.gram` (differentiable)."""
    if not isinstance(features, Tensor) or features.dim() != 4:
        raise ValueError(f"gram_matrix: expected features of shape (N, C, H, W), got "
                         f"{tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__}")
    return ops.gram(features, normalize)


def _check_layers(style_layers: Sequence[int], style_weights: Sequence[float], n_maps: int | None,
                  fn: str, targets: Sequence | None = None) -> None:
    if len(style_layers) != len(style_weights):
        raise ValueError(f"{fn}: style_weights must have one weight per style layer: expected "
                         f"{len(style_layers)} (style_layers={list(style_layers)}), got {len(style_weights)}")
    if targets is not None and len(targets) != len(style_layers):
        raise ValueError(f"{fn}: style_targets must have one Gram matrix per style layer: expected "
                         f"{len(style_layers)}, got {len(targets)}")
    for layer in style_layers:
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError(f"{fn}: style layer indices must be ints, got {layer!r}")
        if n_maps is not None and not 0 <= layer < n_maps:
            raise ValueError(f"{fn}: style layer index {layer} out of range: expected 0..{n_maps - 1}")


def style_loss(feats: Sequence[Tensor], style_layers: Sequence[int], style_targets: Sequence[Tensor],
               style_weights: Sequence[float]) -> Tensor:
    """``sum_i style_weights[i] * sum((gram_matrix(feats[style_layers[i]]) - style_targets[i]) ** 2)``.

    ``feats``: the list from :func:`extract_features` of the current image;
    ``style_targets[i]``: the (1, C, C) Gram matrix of the style image at layer
    ``style_layers[i]``. Returns a scalar tensor.
    """
    _check_layers(style_layers, style_weights, None, "style_loss", style_targets)
    loss = feats[0].new_zeros(())
    for layer, target, weight in zip(style_layers, style_targets, style_weights):
        if weight == 0:  # (feats may stop before a layer that does not count)
            continue
        if not 0 <= layer < len(feats):
            raise ValueError(f"style_loss: style layer index {layer} out of range: expected "
                             f"0..{len(feats) - 1} (len(feats) = {len(feats)})")
        gram = gram_matrix(feats[layer])
        if gram.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"style_loss: style target for layer {layer} has shape {tuple(target.shape)}, "
                             f"expected (1, {gram.shape[-1]}, {gram.shape[-1]})")
        loss = loss + weight * torch.sum((gram - target) ** 2)
    return loss


def tv_loss(img: Tensor, tv_weight: float) -> Tensor:
    """Total variation: ``tv_weight`` times the sum over all channels of the squared
    differences of vertically and horizontally adjacent pixels of ``img`` (N, 3, H, W)."""
    if img.dim() != 4:
        raise ValueError(f"tv_loss: expected img of shape (N, C, H, W), got {tuple(img.shape)}")
    vertical = torch.sum((img[:, :, 1:, :] - img[:, :, :-1, :]) ** 2)
    horizontal = torch.sum((img[:, :, :, 1:] - img[:, :, :, :-1]) ** 2)
    return tv_weight * (vertical + horizontal)


def softmax_activations(features: Tensor, temperature: float = 1.0) -> Tensor:
    """The softmax transformation of Wang et al. (CVPR 2021, "Rethinking and Improving the
    Robustness of Image Style Transfer"): each channel's activation map becomes a
    distribution over the H*W positions, ``softmax(F[n, c] / temperature)``, scaled by
    ``H*W`` so that its mean is 1 whatever the image size. (N, C, H, W) -> same shape.

    It raises the entropy of the peaky activations of residual networks, which makes
    their Gram matrices better style statistics.
    """
    if not temperature > 0:
        raise ValueError(f"softmax_activations: temperature must be > 0, got {temperature!r}")
    n, c, h, w = features.shape
    flat = torch.softmax(features.reshape(n, c, h * w) / temperature, dim=-1)
    return (flat * (h * w)).reshape(n, c, h, w)

