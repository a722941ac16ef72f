"""Gradient attributions of a class score to the input image.

Every function takes preprocessed images ``X`` (N, 3, H, W) (as made by
``model.preprocess``), class indices ``y`` (an int, a sequence or an (N,)
integer tensor) and a classifier ``model`` mapping (N, 3, H, W) to (N, C)
unnormalised scores. The model runs in eval mode (its previous mode is restored)
and only ``torch.autograd.grad`` is used, so parameter ``.grad`` fields are
never touched and ``X`` is never modified. Attributions are in units of
score per preprocessed-pixel unit (gradients) or of score (Integrated
Gradients, Grad-CAM).

* :func:`compute_saliency_maps` -- Simonyan et al. 2014, as in the assignment.
* :func:`smoothgrad` -- Smilkov et al. 2017: gradients averaged over noisy copies.
* :func:`integrated_gradients` -- Sundararajan et al. 2017, with
  :func:`completeness_delta` to check that attributions sum to f(x) - f(baseline).
* :func:`grad_cam` -- Selvaraju et al. 2017 on a chosen layer.
* :func:`reduce_channels` -- (N, 3, H, W) attributions to (N, H, W) heatmaps.

May import: ``a3ext.models``, ``a3ext.visualization._common``; outside a3ext: numpy,
torch.
"""
from __future__ import annotations

import difflib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_images, check_targets, eval_mode, pixel_bounds

__all__ = [
    "compute_saliency_maps",
    "class_score_gradients",
    "smoothgrad",
    "integrated_gradients",
    "ig_alphas_and_weights",
    "completeness_delta",
    "resolve_baseline",
    "grad_cam",
    "resolve_layer",
    "default_gradcam_layer",
    "reduce_channels",
]


def class_score_gradients(X: torch.Tensor, y, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each image's class-``y[i]`` score with respect to that image.

    Returns ``(grad, scores)``: ``grad`` (N, 3, H, W) is d(sum_i s_{y_i}(X_i))/dX,
    which is image i's own gradient in row i because the model treats the images
    of a batch independently in eval mode; ``scores`` (N, C) are the detached
    unnormalised scores at ``X``.
    """
    fn = "class_score_gradients"
    check_images(X, fn, model=model)
    target = check_targets(y, X.shape[0], fn)
    with eval_mode(model):
        x = X.detach().clone().requires_grad_(True)
        scores = model(x)
        _check_scores(scores, X.shape[0], target, fn)
        picked = scores.gather(1, target.to(scores.device).view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(picked, x)
    return grad, scores.detach()


def _check_scores(scores, n: int, target: torch.Tensor, fn: str) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != n:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"{fn}: model must map (N, 3, H, W) images to (N, C) class scores, got {got}")
    c = scores.shape[1]
    bad = [int(v) for v in target if not 0 <= int(v) < c]
    if bad:
        raise ValueError(f"{fn}: class indices must be in [0, {c}) for this model, got {bad}")


def compute_saliency_maps(X: torch.Tensor, y, model: nn.Module) -> torch.Tensor:
    """Saliency maps (Simonyan et al. 2014) as in the assignment.

    The gradient of the correct class's unnormalised score (summed over the
    batch) with respect to the images, then its absolute value and the maximum
    over the 3 colour channels. ``X`` (N, 3, H, W) preprocessed, ``y`` (N,)
    class indices. Returns a non-negative (N, H, W) tensor of X's dtype, in
    score units per preprocessed-pixel unit.
    """
    grad, _ = class_score_gradients(X, y, model)
    return grad.abs().amax(dim=1)


def reduce_channels(attributions: torch.Tensor, mode: str = "absmax") -> torch.Tensor:
    """(N, 3, H, W) attributions -> (N, H, W) heatmap.

    ``mode``: ``"absmax"`` (max of |a| over channels, the saliency convention),
    ``"abssum"`` (sum of |a|), ``"sum"`` (signed sum, e.g. IG's per-pixel
    contribution to the score difference).
    """
    if attributions.dim() != 4:
        raise ValueError(f"reduce_channels: attributions must be (N, C, H, W), got shape "
                         f"{tuple(attributions.shape)}")
    if mode == "absmax":
        return attributions.abs().amax(dim=1)
    if mode == "abssum":
        return attributions.abs().sum(dim=1)
    if mode == "sum":
        return attributions.sum(dim=1)
    raise ValueError(f"reduce_channels: mode must be 'absmax', 'abssum' or 'sum', got {mode!r}")


# --------------------------------------------------------------------------- SmoothGrad


def smoothgrad(X: torch.Tensor, y, model: nn.Module, n_samples: int = 25, noise_level: float = 0.15,
               stdev: float | None = None, absolute: bool = False, batch_size: int = 16,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): class-score gradients averaged over
    ``n_samples`` noisy copies ``X_i + eps``, ``eps ~ N(0, sigma_i^2)``.

    ``sigma_i = noise_level * (max(X_i) - min(X_i))`` (the paper's noise level,
    10-20% of the input range, default 15%), or the absolute ``stdev`` when given.
    ``absolute=True`` averages ``|grad|`` instead of ``grad`` (what
    ``captum``'s ``NoiseTunnel(Saliency(model))`` computes with its default
    ``abs=True``). The noise is drawn image by image as one
    ``torch.randn((n_samples, 3, H, W), generator=generator)`` (the global RNG when
    ``generator`` is None), so a seeded generator makes the result deterministic.
    ``batch_size`` noisy copies go through the model at a time.
    Returns (N, 3, H, W) in gradient units; see :func:`reduce_channels`.
    """
    fn = "smoothgrad"
    check_images(X, fn, model=model)
    target = check_targets(y, X.shape[0], fn)
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"{fn}: n_samples must be a positive int, got {n_samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    if stdev is None and not noise_level >= 0:
        raise ValueError(f"{fn}: noise_level must be >= 0, got {noise_level!r}")
    if stdev is not None and not stdev >= 0:
        raise ValueError(f"{fn}: stdev must be >= 0, got {stdev!r}")
    out = torch.zeros_like(X)
    for i in range(X.shape[0]):
        xi = X[i].detach()
        sigma = float(stdev) if stdev is not None else noise_level * float(xi.max() - xi.min())
        noise = torch.randn((n_samples,) + tuple(xi.shape), generator=generator,
                            device=generator.device if generator is not None else xi.device)
        noisy = xi.unsqueeze(0) + noise.to(xi.device, xi.dtype) * sigma
        total = torch.zeros_like(xi)
        for start in range(0, n_samples, batch_size):
            chunk = noisy[start:start + batch_size]
            grad, _ = class_score_gradients(chunk, target[i:i + 1].expand(chunk.shape[0]), model)
            total += (grad.abs() if absolute else grad).sum(dim=0)
        out[i] = total / n_samples
    return out


# --------------------------------------------------------------------------- Integrated Gradients


def ig_alphas_and_weights(n_steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` in [0, 1] and weights (summing to 1) for the
    path integral of Integrated Gradients.

    ``method``: ``"gausslegendre"`` (Gauss-Legendre on [0, 1]; exact for
    polynomials of degree < 2 n_steps), ``"riemann_trapezoid"``,
    ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"`` (captum's
    names and rules, except that the trapezoid weights here are ``1/(n-1)``
    with halved ends and sum to 1, where captum's use ``1/n`` and sum to
    ``1 - 1/n``). Both arrays are float64 of length ``n_steps``.
    """
    if not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"integrated_gradients: n_steps must be a positive int, got {n_steps!r}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    riemann = {"riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"}
    if method not in riemann:
        raise ValueError(f"integrated_gradients: method must be 'gausslegendre' or one of "
                         f"{', '.join(sorted(riemann))}, got {method!r}")
    if n_steps < 2:
        raise ValueError(f"integrated_gradients: the Riemann rules need n_steps >= 2, got {n_steps}")
    n = n_steps
    weights = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":  # the composite trapezoid rule on n equally spaced nodes
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[0] /= 2
        weights[-1] /= 2
    elif method == "riemann_left":
        alphas = np.linspace(0.0, 1.0 - 1.0 / n, n)
    elif method == "riemann_right":
        alphas = np.linspace(1.0 / n, 1.0, n)
    else:
        alphas = np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)
    return alphas, weights


def resolve_baseline(baseline, X: torch.Tensor, model: nn.Module, fn: str = "integrated_gradients") -> torch.Tensor:
    """The IG baseline as a tensor shaped like ``X``.

    ``None`` or ``"mean"``: zeros, i.e. the dataset-mean image in preprocessed
    units (mid grey for EfficientNet-Lite0); ``"black"``/``"white"``: pixel
    intensity 0 / 1 (needs ``model.pixel_range``); a number: that constant; a
    tensor broadcastable to X's shape.
    """
    if baseline is None or (isinstance(baseline, str) and baseline == "mean"):
        return torch.zeros_like(X)
    if isinstance(baseline, str):
        if baseline not in ("black", "white"):
            raise ValueError(f"{fn}: baseline must be None, 'mean', 'black', 'white', a number or a tensor, "
                             f"got {baseline!r}")
        bounds = pixel_bounds(model, X)
        if bounds is None:
            raise ValueError(f"{fn}: baseline={baseline!r} needs a model with pixel_range; "
                             f"pass a tensor instead")
        return bounds[0 if baseline == "black" else 1].expand_as(X).clone()
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(X, float(baseline))
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.detach().to(X.device, X.dtype).expand_as(X).clone()
        except RuntimeError:
            raise ValueError(f"{fn}: baseline of shape {tuple(baseline.shape)} does not broadcast to "
                             f"X's shape {tuple(X.shape)}") from None
    raise TypeError(f"{fn}: baseline must be None, a string, a number or a tensor, got {type(baseline).__name__}")


def integrated_gradients(X: torch.Tensor, y, model: nn.Module, baseline=None, n_steps: int = 64,
                         method: str = "gausslegendre", batch_size: int = 16) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017).

    ``IG_i(x) = (x_i - b_i) * integral_0^1 ds_y(b + a (x - b)) / dx_i da``, the
    integral approximated by the quadrature rule ``method`` with ``n_steps``
    nodes (:func:`ig_alphas_and_weights`; captum's rules and default). On a
    smooth network 20-50 Gauss-Legendre nodes meet completeness to well under 1%;
    on EfficientNet-Lite0 (ReLU6, BatchNorm) most of the score change happens in
    a short stretch of the path and 64 nodes leave gaps of several percent --
    check with :func:`completeness_delta` and raise ``n_steps``.

    ``baseline``: see :func:`resolve_baseline` (default zeros = the dataset-mean
    image). ``batch_size`` path points go through the model at a time. Returns
    (N, 3, H, W) attributions in score units; by completeness they sum to about
    ``s_y(x) - s_y(baseline)`` per image (check with :func:`completeness_delta`;
    more steps shrink the gap).
    """
    fn = "integrated_gradients"
    check_images(X, fn, model=model)
    target = check_targets(y, X.shape[0], fn)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{fn}: batch_size must be a positive int, got {batch_size!r}")
    alphas, weights = ig_alphas_and_weights(n_steps, method)
    base = resolve_baseline(baseline, X, model, fn)
    X = X.detach()
    out = torch.empty_like(X)
    for i in range(X.shape[0]):
        diff = X[i] - base[i]
        a = torch.as_tensor(alphas, dtype=X.dtype, device=X.device).view(-1, 1, 1, 1)
        w = torch.as_tensor(weights, dtype=X.dtype, device=X.device).view(-1, 1, 1, 1)
        avg_grad = torch.zeros_like(diff)
        for start in range(0, a.shape[0], batch_size):
            ak, wk = a[start:start + batch_size], w[start:start + batch_size]
            points = base[i].unsqueeze(0) + ak * diff.unsqueeze(0)
            grad, _ = class_score_gradients(points, target[i:i + 1].expand(points.shape[0]), model)
            avg_grad += (grad * wk).sum(dim=0)
        out[i] = diff * avg_grad
    return out


def completeness_delta(attributions: torch.Tensor, X: torch.Tensor, y, model: nn.Module,
                       baseline=None) -> tuple[torch.Tensor, torch.Tensor]:
    """How far IG attributions are from completeness.

    Returns ``(delta, score_difference)``, both (N,): ``delta = sum(attr_i) -
    (s_y(x_i) - s_y(b_i))`` and ``score_difference = s_y(x_i) - s_y(b_i)``,
    so ``|delta| / |score_difference|`` is the relative error of the path integral.
    """
    fn = "completeness_delta"
    check_images(X, fn, model=model)
    target = check_targets(y, X.shape[0], fn)
    if attributions.shape != X.shape:
        raise ValueError(f"{fn}: attributions must have X's shape {tuple(X.shape)}, got "
                         f"{tuple(attributions.shape)}")
    base = resolve_baseline(baseline, X, model, fn)
    with torch.no_grad(), eval_mode(model):
        scores = model(torch.cat([X.detach(), base]))
    idx = target.to(scores.device).repeat(2).view(-1, 1)
    picked = scores.gather(1, idx).view(2, -1)
    difference = picked[0] - picked[1]
    delta = attributions.detach().sum(dim=(1, 2, 3)).to(difference.dtype) - difference
    return delta, difference


# --------------------------------------------------------------------------- Grad-CAM


def resolve_layer(model: nn.Module, layer) -> nn.Module:
    """A submodule of ``model`` given as a module or by its dotted name (as in
    ``model.named_modules()``, e.g. ``"features.12"``, ``"_blocks.15"``).
    Unknown names raise ValueError listing the closest names."""
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"grad_cam: layer {type(layer).__name__} is not a submodule of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"grad_cam: layer must be a module name (str) or an nn.Module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.4)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise ValueError(f"grad_cam: model has no layer named {layer!r}{hint} "
                     f"(see model.named_modules(); {len(names)} names)")


def default_gradcam_layer(model: nn.Module) -> str:
    """The name of the layer Grad-CAM uses by default: the last spatial feature
    map before global pooling -- ``"_bn1"`` (1280 x 7 x 7 at 224 px, the head
    convolution after BatchNorm) for EfficientNet-Lite0, ``"features.12"``
    (512 x 13 x 13) for SqueezeNet 1.1, else the last ``nn.Conv2d``."""
    from ..models import EfficientNetLite0, SqueezeNet

    if isinstance(model, EfficientNetLite0):
        return "_bn1"
    if isinstance(model, SqueezeNet):
        return "features.12"
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("grad_cam: the model has no nn.Conv2d layer; pass layer= explicitly")
    return convs[-1]


def grad_cam(X: torch.Tensor, y, model: nn.Module, layer=None, relu: bool = True,
             upsample: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) on the output ``A`` (N, K, h, w) of ``layer``.

    ``cam = ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of
    ds_y/dA_k. ``layer``: a module of ``model`` or its dotted name; ``None``
    uses :func:`default_gradcam_layer`. ``relu=False`` keeps negative evidence.
    Returns (N, H, W) bilinearly upsampled to X's size (``upsample=True``) or
    (N, h, w), in score units.
    """
    fn = "grad_cam"
    check_images(X, fn, model=model)
    target = check_targets(y, X.shape[0], fn)
    module = resolve_layer(model, default_gradcam_layer(model) if layer is None else layer)
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output)

    handle = module.register_forward_hook(hook)
    try:
        with eval_mode(model):
            x = X.detach().clone().requires_grad_(True)
            scores = model(x)
    finally:
        handle.remove()
    _check_scores(scores, X.shape[0], target, fn)
    if len(captured) != 1 or not isinstance(captured[0], torch.Tensor) or captured[0].dim() != 4:
        what = (f"{len(captured)} outputs" if len(captured) != 1 else
                f"an output of shape {tuple(captured[0].shape) if isinstance(captured[0], torch.Tensor) else type(captured[0]).__name__}")
        raise ValueError(f"grad_cam: layer must run once per forward pass and output (N, K, h, w), got {what}")
    acts = captured[0]
    picked = scores.gather(1, target.to(scores.device).view(-1, 1)).sum()
    (grads,) = torch.autograd.grad(picked, acts)
    cam = (grads.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True).detach()
    if relu:
        cam = cam.clamp_min(0)
    if upsample:
        cam = F.interpolate(cam, size=tuple(X.shape[-2:]), mode="bilinear", align_corners=False)
    return cam[:, 0]
