"""The style-transfer loop (:func:`style_transfer`, the assignment's function) and what
it returns (:class:`StyleTransferResult`).

:func:`style_transfer` only calls six steps, each a function below, in this order:

1. :func:`_resolve_settings`: check the arguments and fill in the backbone's defaults
   (a :class:`_Plan`);
2. :func:`_compute_targets`: load the images, and compute the content features and the
   style Gram matrices to match (:class:`_Targets`);
3. :func:`_start_image`: the content image or seeded noise, the tensor being optimised;
4. :func:`_loss_closure`: content + style + total-variation loss of the current image;
5. :func:`_run_loop`: Adam with the assignment's schedule, or L-BFGS, recording the losses;
6. :func:`_finish`: clamp, put the colour back (``preserve_color``), the result.

May import: torch, tqdm, :mod:`a3ext.assets` (images by name) and the style modules
below it (:mod:`.features`, :mod:`.losses`, :mod:`.color`, :mod:`.settings`); not
:mod:`.presets`, :mod:`.figures` or :mod:`.cli`, which build on this one.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import assets
from .color import _from_pixels, _luminance_image, _to_pixels, rgb_to_yiq, yiq_to_rgb
from .features import _backbone_name, _num_feature_maps, as_backbone, default_cnn, extract_features
from .losses import _check_layers, content_loss, gram_matrix, softmax_activations, style_loss, tv_loss
from .settings import BackboneSettings, backbone_settings

__all__ = ["StyleTransferResult", "style_transfer"]


@dataclass
class StyleTransferResult:
    """What :func:`style_transfer` returns.

    ``image``: (1, 3, H, W) float32 in the backbone's normalised space (clamped to the
    valid pixel range); ``pil``: the same as an RGB PIL image; ``history``: per
    iteration (per function evaluation for L-BFGS) the ``total``, ``content``,
    ``style`` and ``tv`` losses of the image *before* that step; ``content`` /
    ``styles``: the preprocessed inputs (normalised); ``settings``: the arguments used.
    """

    image: Tensor
    pil: object

    history: dict[str, list[float]]
    content: Tensor
    styles: list[Tensor]
    settings: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # one line: a notebook cell ending in style_transfer(...) shows this
        losses = self.history.get("total") or [float("nan")]
        return (f"StyleTransferResult(image={tuple(self.image.shape)}, iterations={len(losses)}, "
                f"final loss={losses[-1]:.4g})")


def style_transfer(content_image, style_image, image_size: int, style_size: int, content_layer: int,
                   content_weight: float, style_layers: Sequence[int], style_weights: Sequence[float],
                   tv_weight: float, init_random: bool = False, *, cnn: nn.Module | None = None,
                   style_blend_weights: Sequence[float] | None = None, preserve_color: bool = False,
                   optimizer: str = "adam", num_iterations: int = 200,
                   learning_rate: float | None = None, decayed_learning_rate: float | None = None,
                   decay_lr_at: int | None = None, clamp_until: int | None = None,
                   clamp_range: tuple[float, float] | None = None,
                   softmax_temperature: float | None | str = "auto", seed: int = 0,
                   progress: bool = True, callback=None) -> StyleTransferResult:
    """Synthesise an image with the content of ``content_image`` and the style of
    ``style_image`` by gradient descent on the pixels (the assignment's ``style_transfer``).

    Images: a PIL image, an asset name or file path (:func:`a3ext.assets.resolve_image`),
    or a preprocessed (1, 3, H, W) tensor. The content image is resized to shorter side
    ``image_size``, each style image to ``style_size`` (aspect ratios kept).
    ``style_image`` may be a list of several; their Gram targets are mixed with
    ``style_blend_weights`` (default equal; normalised to sum to 1).

    Loss = ``content_loss`` at ``content_layer`` + ``style_loss`` at ``style_layers``
    + ``tv_loss``. ``content_weight=0`` with ``init_random=True`` is texture synthesis;
    all style weights 0 with ``init_random=True`` is feature inversion.

    ``optimizer="adam"``: the assignment's schedule -- ``num_iterations`` (200) steps,
    Adam with ``learning_rate`` (3.0) replaced by a new Adam at ``decayed_learning_rate``
    (0.1) at step ``decay_lr_at`` (180), the image clamped to ``clamp_range`` before each
    step while ``t < clamp_until`` (190). Defaults of these come from the backbone's
    :class:`BackboneSettings` (SqueezeNet: exactly the assignment's; clamp [-1.5, 1.5]).
    ``optimizer="lbfgs"``: L-BFGS as in neural-style (learning rate 1, history 100, no
    tolerances, ``num_iterations`` function evaluations), the result clamped at the end.

    ``preserve_color``: luminance-only transfer -- content and style (its luminance
    matched to the content's mean and std) are turned grey, the transfer runs on them,
    and the result's luminance Y is combined with the content's chroma (I, Q in YIQ).

    ``softmax_temperature``: pass the style-layer features through
    :func:`softmax_activations` before the Gram matrix, with temperature
    ``softmax_temperature`` times the layer's RMS activation over the style image(s)
    (so one number suits every layer); ``None``: plain Gram matrices; ``"auto"``
    (default): the backbone's setting.

    ``cnn``: the backbone (default: :func:`default_cnn`, EfficientNet-Lite0). ``seed``
    fixes the random start. ``progress``: a tqdm bar on stderr. ``callback(t, img, losses)``
    is called after each iteration's losses are known.
    """
    plan = _resolve_settings(
        content_layer, content_weight, style_layers, style_weights, tv_weight, cnn=cnn,
        image_size=image_size, style_size=style_size, init_random=init_random, style_image=style_image,
        style_blend_weights=style_blend_weights, preserve_color=preserve_color, optimizer=optimizer,
        num_iterations=num_iterations, learning_rate=learning_rate, decayed_learning_rate=decayed_learning_rate,
        decay_lr_at=decay_lr_at, clamp_until=clamp_until, clamp_range=clamp_range,
        softmax_temperature=softmax_temperature, seed=seed)
    targets = _compute_targets(plan, content_image)
    img = _start_image(plan, targets)
    losses = _loss_closure(plan, targets, img)
    history = _run_loop(plan, img, losses, progress=progress, callback=callback)
    return _finish(plan, targets, img, history)


def _load_image(image, cnn, size: int, what: str) -> Tensor:
    """A PIL image, an asset name / file path, or an already preprocessed (1, 3, H, W)
    tensor -> the normalised (1, 3, H', W') tensor (shorter side ``size``, aspect kept)."""
    if isinstance(image, Tensor):
        if image.dim() != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"style_transfer: {what} tensor must be (1, 3, H, W), got {tuple(image.shape)}")
        return image.detach().to(torch.float32).contiguous()
    if isinstance(image, (str, os.PathLike)):
        image = assets.resolve_image(image)
    return cnn.preprocess(image, size=size, crop=False).contiguous()


def _check_positive_int(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"style_transfer: {name} must be a positive int, got {value!r}")


# --------------------------------------------------------------------------- 1. settings


@dataclass
class _Plan:
    """One run's arguments, checked, with the backbone's defaults filled in."""

    cnn: nn.Module
    defaults: BackboneSettings
    image_size: int
    style_size: int
    content_layer: int
    content_weight: float
    style_layers: list[int]
    style_weights: list[float]
    tv_weight: float
    init_random: bool
    style_images: list
    blend: list[float]
    preserve_color: bool
    optimizer: str
    num_iterations: int
    learning_rate: float
    decayed_learning_rate: float
    decay_lr_at: int
    clamp_until: int
    clamp_range: tuple[float, float] | None
    softmax_temperature: float | None
    seed: int
    #: the valid pixel range in normalised units (the final clamp)
    low: Tensor
    high: Tensor
    #: the clamp while ``t < clamp_until`` (``clamp_range``, else the pixel range)
    clamp_lo: Tensor
    clamp_hi: Tensor

    @property
    def deepest(self) -> int:
        """The deepest feature map any non-zero loss term reads."""
        active_style = [(l, w) for l, w in zip(self.style_layers, self.style_weights) if w != 0]
        return max([self.content_layer if self.content_weight != 0 else 0] + [l for l, _ in active_style])

    def as_dict(self) -> dict:
        """The arguments used, as :attr:`StyleTransferResult.settings` reports them."""
        return dict(backbone=_backbone_name(self.cnn), image_size=self.image_size, style_size=self.style_size,
                    content_layer=self.content_layer, content_weight=self.content_weight,
                    style_layers=self.style_layers, style_weights=self.style_weights, tv_weight=self.tv_weight,
                    init_random=self.init_random, style_blend_weights=self.blend,
                    preserve_color=self.preserve_color, optimizer=self.optimizer,
                    num_iterations=self.num_iterations, learning_rate=self.learning_rate,
                    decayed_learning_rate=self.decayed_learning_rate, decay_lr_at=self.decay_lr_at,
                    clamp_until=self.clamp_until,
                    clamp_range=None if self.clamp_range is None else tuple(self.clamp_range),
                    softmax_temperature=self.softmax_temperature, seed=self.seed)


def _blend_weights(style_images: list, style_blend_weights: Sequence[float] | None) -> list[float]:
    """The style images' blend weights, normalised to sum 1 (default: equal)."""
    if style_blend_weights is None:
        return [1.0 / len(style_images)] * len(style_images)
    blend = [float(w) for w in style_blend_weights]
    if len(blend) != len(style_images):
        raise ValueError(f"style_transfer: style_blend_weights must have one weight per style image: "
                         f"expected {len(style_images)}, got {len(blend)}")
    if any(w < 0 for w in blend) or sum(blend) <= 0:
        raise ValueError(f"style_transfer: style_blend_weights must be >= 0 with a positive sum, got {blend}")
    return [w / sum(blend) for w in blend]


def _resolve_settings(content_layer, content_weight, style_layers, style_weights, tv_weight, *, cnn,
                      image_size, style_size, init_random, style_image, style_blend_weights, preserve_color,
                      optimizer, num_iterations, learning_rate, decayed_learning_rate, decay_lr_at,
                      clamp_until, clamp_range, softmax_temperature, seed) -> _Plan:
    """Step 1: check every argument (a clear error before any work) and fill in the
    backbone's :class:`BackboneSettings` for the schedule arguments left ``None``."""
    cnn = default_cnn() if cnn is None else as_backbone(cnn)
    try:
        defaults = backbone_settings(cnn)
    except TypeError:
        defaults = BackboneSettings(content_layer, content_weight, tuple(style_layers), tuple(style_weights),
                                    tv_weight)
    _check_positive_int(image_size, "image_size")
    _check_positive_int(style_size, "style_size")
    _check_positive_int(num_iterations, "num_iterations")
    n_maps = _num_feature_maps(cnn)
    if not isinstance(content_layer, int) or isinstance(content_layer, bool):
        raise TypeError(f"style_transfer: content_layer must be an int, got {content_layer!r}")
    if n_maps is not None and not 0 <= content_layer < n_maps:
        raise ValueError(f"style_transfer: content_layer {content_layer} out of range: expected "
                         f"0..{n_maps - 1} for {_backbone_name(cnn)}")
    style_layers, style_weights = list(style_layers), [float(w) for w in style_weights]
    _check_layers(style_layers, style_weights, n_maps, "style_transfer")
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"style_transfer: optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    style_images = list(style_image) if isinstance(style_image, (list, tuple)) else [style_image]
    if not style_images:
        raise ValueError("style_transfer: expected at least one style image, got an empty list")
    blend = _blend_weights(style_images, style_blend_weights)
    temperature = defaults.softmax_temperature if softmax_temperature == "auto" else softmax_temperature
    if temperature is not None and not temperature > 0:
        raise ValueError(f"style_transfer: softmax_temperature must be > 0 or None, got {temperature!r}")
    low, high = (t.to(torch.float32) for t in cnn.pixel_range)
    if clamp_range is None:
        clamp_range = defaults.clamp_range
    if clamp_range is not None:
        lo_c, hi_c = float(clamp_range[0]), float(clamp_range[1])
        if not lo_c < hi_c:
            raise ValueError(f"style_transfer: clamp_range must be (low, high) with low < high, got {clamp_range}")
        clamp_lo, clamp_hi = torch.full_like(low, lo_c), torch.full_like(high, hi_c)
    else:
        clamp_lo, clamp_hi = low, high
    return _Plan(
        cnn=cnn, defaults=defaults, image_size=image_size, style_size=style_size, content_layer=content_layer,
        content_weight=content_weight, style_layers=style_layers, style_weights=style_weights,
        tv_weight=tv_weight, init_random=init_random, style_images=style_images, blend=blend,
        preserve_color=preserve_color, optimizer=optimizer, num_iterations=num_iterations,
        learning_rate=defaults.learning_rate if learning_rate is None else float(learning_rate),
        decayed_learning_rate=(defaults.decayed_learning_rate if decayed_learning_rate is None
                               else float(decayed_learning_rate)),
        decay_lr_at=defaults.decay_lr_at if decay_lr_at is None else int(decay_lr_at),
        clamp_until=defaults.clamp_until if clamp_until is None else int(clamp_until),
        clamp_range=clamp_range, softmax_temperature=temperature, seed=seed,
        low=low, high=high, clamp_lo=clamp_lo, clamp_hi=clamp_hi)


# --------------------------------------------------------------------------- 2. targets


@dataclass
class _Targets:
    """The preprocessed images and the features the loss matches."""

    #: the content and style images as given (normalised), for the result
    content: Tensor
    styles: list[Tensor]
    #: the content image the run works on (its grey luminance with ``preserve_color``)
    work_content: Tensor
    #: the content layer's features of ``work_content``
    content_features: Tensor
    #: per style layer, the blended (1, C, C) Gram target
    style_grams: list[Tensor]
    #: per style layer, the softmax temperature (empty: plain Gram matrices)
    layer_temperature: dict[int, float]


def _style_features(feats: list[Tensor], layer_temperature: dict[int, float]) -> list[Tensor]:
    """The feature maps the Gram matrices are taken of: softmax-transformed at the
    layers with a temperature, as they are elsewhere."""
    if not layer_temperature:
        return feats
    return [softmax_activations(f, layer_temperature[i]) if i in layer_temperature else f
            for i, f in enumerate(feats)]


def _compute_targets(plan: _Plan, content_image) -> _Targets:
    """Step 2: load the content and style images, turn them grey for a colour-preserving
    run, and compute the content features and the blended style Gram matrices."""
    cnn = plan.cnn
    content = _load_image(content_image, cnn, plan.image_size, "content_image")
    styles = [_load_image(s, cnn, plan.style_size, "style_image") for s in plan.style_images]
    work_content, work_styles = content, styles
    if plan.preserve_color:
        work_content = _luminance_image(content, cnn)
        work_styles = [_luminance_image(s, cnn, match=content) for s in styles]
    deepest = plan.deepest
    layer_temperature: dict[int, float] = {}
    with torch.no_grad():
        content_features = extract_features(work_content, cnn, upto=deepest)[plan.content_layer].clone()
        raw_style = [extract_features(s, cnn, upto=max([deepest] + plan.style_layers)) for s in work_styles]
        if plan.softmax_temperature is not None:
            # the temperature is in units of the layer's RMS activation over the style image(s),
            # so one number suits layers whose activations differ in scale
            for layer in set(plan.style_layers):
                rms = sum(b * float(f[layer].pow(2).mean().sqrt()) for b, f in zip(plan.blend, raw_style))
                layer_temperature[layer] = float(plan.softmax_temperature) * max(rms, 1e-12)
        per_style = [_style_features(f, layer_temperature) for f in raw_style]
        style_grams = [sum(b * gram_matrix(f[layer]) for b, f in zip(plan.blend, per_style))
                       for layer in plan.style_layers]
    return _Targets(content=content, styles=styles, work_content=work_content, content_features=content_features,
                    style_grams=style_grams, layer_temperature=layer_temperature)


# --------------------------------------------------------------------------- 3. start image


def _start_image(plan: _Plan, targets: _Targets) -> Tensor:
    """Step 3: the image being optimised (``requires_grad``): the (working) content image,
    or with ``init_random`` uniform noise from a generator seeded with ``plan.seed`` over
    the backbone's ``init_range`` (default: the pixel range)."""
    work_content = targets.work_content
    gen = torch.Generator().manual_seed(int(plan.seed))
    if plan.init_random:
        init_range = plan.defaults.init_range
        u = torch.rand(work_content.shape, generator=gen, dtype=torch.float32)
        if init_range is None:
            img = plan.low + (plan.high - plan.low) * u
        else:
            lo_i, hi_i = init_range
            img = lo_i + (hi_i - lo_i) * u
    else:
        img = work_content.clone()
    return img.to(work_content.device).contiguous().requires_grad_(True)


# --------------------------------------------------------------------------- 4. loss


def _loss_closure(plan: _Plan, targets: _Targets, img: Tensor) -> Callable[[], tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Step 4: a function of no arguments returning ``(total, content, style, tv)`` losses
    of ``img`` as it is now (terms with weight 0 are zeros and cost nothing)."""
    cnn, deepest = plan.cnn, plan.deepest

    def losses() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feats = extract_features(img, cnn, upto=deepest)
        c = (content_loss(plan.content_weight, feats[plan.content_layer], targets.content_features)
             if plan.content_weight != 0 else img.new_zeros(()))
        s = style_loss(_style_features(feats, targets.layer_temperature), plan.style_layers,
                       targets.style_grams, plan.style_weights)
        tv = tv_loss(img, plan.tv_weight) if plan.tv_weight != 0 else img.new_zeros(())
        return c + s + tv, c, s, tv

    return losses


# --------------------------------------------------------------------------- 5. loop


def _run_loop(plan: _Plan, img: Tensor, losses: Callable, *, progress: bool, callback) -> dict[str, list[float]]:
    """Step 5: optimise ``img`` in place and return the loss history (per iteration, or
    per function evaluation for L-BFGS, the losses *before* that step).

    Adam: the assignment's schedule (clamp to ``clamp_lo..clamp_hi`` before each step while
    ``t < clamp_until``; a new Adam at the decayed rate at step ``decay_lr_at``). L-BFGS:
    neural-style's settings, ``num_iterations`` function evaluations."""
    from tqdm.auto import tqdm

    history: dict[str, list[float]] = {"total": [], "content": [], "style": [], "tv": []}

    def record(t: int, parts) -> None:
        for key, value in zip(("total", "content", "style", "tv"), parts):
            history[key].append(float(value.detach()))
        if callback is not None:
            callback(t, img.detach(), {k: v[-1] for k, v in history.items()})

    bar = tqdm(total=plan.num_iterations, desc=f"style transfer ({_backbone_name(plan.cnn)}, {plan.optimizer})",
               disable=not progress, file=sys.stderr, leave=False, dynamic_ncols=True)

    def evaluate(t: int) -> Tensor:
        parts = losses()
        parts[0].backward()
        record(t, parts)
        bar.update(1)
        bar.set_postfix(loss=f"{history['total'][-1]:.4g}", refresh=False)
        return parts[0]

    try:
        if plan.optimizer == "adam":
            opt = torch.optim.Adam([img], lr=plan.learning_rate)
            for t in range(plan.num_iterations):
                if t < plan.clamp_until:
                    with torch.no_grad():
                        img.copy_(torch.maximum(torch.minimum(img, plan.clamp_hi), plan.clamp_lo))
                opt.zero_grad()
                evaluate(t)
                if t == plan.decay_lr_at:
                    opt = torch.optim.Adam([img], lr=plan.decayed_learning_rate)
                opt.step()
        else:
            opt = torch.optim.LBFGS([img], lr=1.0, max_iter=plan.num_iterations, max_eval=plan.num_iterations,
                                    tolerance_grad=-1.0, tolerance_change=-1.0, history_size=100)

            def closure():
                opt.zero_grad()
                return evaluate(len(history["total"]))

            opt.step(closure)
    finally:
        bar.close()
    return history


# --------------------------------------------------------------------------- 6. result


def _finish(plan: _Plan, targets: _Targets, img: Tensor, history: dict[str, list[float]]) -> StyleTransferResult:
    """Step 6: clamp to the pixel range; with ``preserve_color``, the result's luminance
    with the content's chroma (YIQ); the :class:`StyleTransferResult`."""
    cnn = plan.cnn
    with torch.no_grad():
        out = torch.maximum(torch.minimum(img.detach(), plan.high), plan.low)
        if plan.preserve_color:
            y = rgb_to_yiq(_to_pixels(out, cnn))[:, :1]
            iq = rgb_to_yiq(_to_pixels(targets.content, cnn))[:, 1:]
            out = _from_pixels(yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0.0, 1.0), cnn)
    return StyleTransferResult(image=out, pil=cnn.deprocess(out), history=history, content=targets.content,
                               styles=targets.styles, settings=plan.as_dict())
