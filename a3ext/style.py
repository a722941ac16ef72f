"""Neural style transfer (Gatys et al., CVPR 2016) with the assignment's API and semantics.

The assignment's functions, exactly::

    feats = extract_features(x, cnn)                        # list of (N, C_l, H_l, W_l)
    content_loss(content_weight, content_current, content_original)   # w * sum((F - P)^2)
    gram_matrix(features, normalize=True)                   # (N, C, C), F F^T / (C H W)
    style_loss(feats, style_layers, style_targets, style_weights)     # sum_l w_l sum((G_l - A_l)^2)
    tv_loss(img, tv_weight)                                 # w * sum of squared neighbour differences
    result = style_transfer(content_image, style_image, image_size, style_size, content_layer,
                            content_weight, style_layers, style_weights, tv_weight, init_random=False)

``gram_matrix`` is the C++ op :func:`a3ext.ops.gram`. :func:`style_transfer` runs the
assignment's schedule (200 Adam steps, learning rate 3.0 dropping to 0.1 at step 180,
the image clamped before each step while ``t < 190``) or L-BFGS, and also does feature
inversion (style weights 0, random start), texture synthesis (content weight 0), blends of
several style images (their Gram targets mixed with blend weights) and colour preservation
(luminance-only transfer in YIQ space, Gatys et al. 2016, "Preserving Color in Neural
Artistic Style Transfer").

Backbones (any :class:`a3ext.models.ImageNetClassifier`):

* SqueezeNet 1.1 with the assignment's layer indices (content ``features[3]``, style
  ``features[1, 4, 6, 7]``) and the assignment's weights -- it needs a torchvision
  state dict (``a3ext.models.squeezenet1_1(weights=...)``); none ships offline.
* EfficientNet-Lite0 (the default, real ImageNet weights embedded), with the layers,
  weights and the softmax activation transform (Wang et al., CVPR 2021) chosen here;
  see :data:`EFFICIENTNET_SETTINGS` for the choice and why.

Images live in the backbone's normalised space (``cnn.preprocess``); the clamp range
of the assignment, [-1.5, 1.5], is for SqueezeNet's ImageNet mean/std normalisation.
For other backbones the image is clamped to ``cnn.pixel_range`` (the preprocessed values
of intensities 0 and 1; [-0.992, 1.0] for EfficientNet's ``(x - 127) / 128``).
"""
from __future__ import annotations

from ._util import positive_int
import functools
import itertools
import os
import sys
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import assets, models, ops

__all__ = [
    "extract_features",
    "as_backbone",
    "content_loss",
    "gram_matrix",
    "style_loss",
    "tv_loss",
    "softmax_activations",
    "rgb_to_yiq",
    "yiq_to_rgb",
    "BackboneSettings",
    "SQUEEZENET_SETTINGS",
    "EFFICIENTNET_SETTINGS",
    "backbone_settings",
    "default_cnn",
    "StyleTransferResult",
    "style_transfer",
    "Preset",
    "PRESETS",
    "preset_arguments",
    "run_preset",
    "save_comparison",
    "register_cli",
]


# --------------------------------------------------------------------------- features


def _backbone_name(cnn: nn.Module) -> str:
    if isinstance(cnn, models.SqueezeNet):
        return "squeezenet"
    if isinstance(cnn, models.EfficientNetLite0):
        return "efficientnet"
    return type(cnn).__name__


def _num_feature_maps(cnn: nn.Module) -> int | None:
    if isinstance(cnn, models.SqueezeNet):
        return len(cnn.features)
    if isinstance(cnn, models.EfficientNetLite0):
        return 1 + len(cnn._blocks)
    return None


class _FoldedConv(nn.Module):
    """A :class:`a3ext.models.Conv2dSame` followed by an eval-mode BatchNorm, folded into one
    convolution with bias (``W' = W * g / sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)``);
    stride-1 "SAME" padding is the symmetric ``k // 2`` and is passed to the convolution instead
    of padding a copy of the input."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        self.register_buffer("weight", (conv.weight * scale.view(-1, 1, 1, 1)).detach().clone())
        self.register_buffer("bias", (bn.bias - bn.running_mean * scale).detach().clone())
        self.same = conv
        self.symmetric = all(s == 1 and k % 2 == 1 for s, k in zip(conv.stride, conv.kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        c = self.same
        if self.symmetric:
            return F.conv2d(x, self.weight, self.bias, 1, [k // 2 for k in c.kernel_size], 1, c.groups)
        pads = []
        for n, k, s in zip(x.shape[-2:], c.kernel_size, c.stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, c.stride, 0, 1, c.groups)


class _FoldedEfficientNet(nn.Module):
    """EfficientNet-Lite0's feature extractor (stem and 16 blocks) with every BatchNorm folded
    into its convolution: the same feature maps as ``cnn.extract_features`` up to float
    rounding, about a fifth less time forward and backward (style transfer runs it 200 times)."""

    def __init__(self, cnn: models.EfficientNetLite0):
        super().__init__()
        self.stem = _FoldedConv(cnn._conv_stem, cnn._bn0)
        self.blocks = nn.ModuleList()
        for b in cnn._blocks:
            m = nn.Module()
            m.expand = _FoldedConv(b._expand_conv, b._bn0) if b.expand else None
            m.depthwise = _FoldedConv(b._depthwise_conv, b._bn1)
            m.project = _FoldedConv(b._project_conv, b._bn2)
            m.residual = b.residual
            self.blocks.append(m)
        self.requires_grad_(False)

    def features(self, x: Tensor, upto: int | None) -> list[Tensor]:
        x = F.relu6(self.stem(x))
        feats = [x]
        for i, b in enumerate(self.blocks, start=1):
            if upto is not None and i > upto:
                break
            y = F.relu6(b.expand(x)) if b.expand is not None else x
            y = b.project(F.relu6(b.depthwise(y)))
            x = y + x if b.residual else y
            feats.append(x)
        return feats


_FOLDED: "weakref.WeakKeyDictionary[nn.Module, _FoldedEfficientNet]" = weakref.WeakKeyDictionary()


def _folded(cnn: models.EfficientNetLite0) -> _FoldedEfficientNet:
    # rebuilt when the network's parameters change (compared by version counters)
    key = tuple(t._version for t in itertools.chain(cnn.parameters(), cnn.buffers()))
    entry = _FOLDED.get(cnn)
    if entry is None or entry[0] != key:
        entry = (key, _FoldedEfficientNet(cnn).to(next(cnn.parameters()).device))
        _FOLDED[cnn] = entry
    return entry[1]


def extract_features(x: Tensor, cnn: nn.Module, upto: int | None = None) -> list[Tensor]:
    """The feature maps of ``x`` (N, 3, H, W) through ``cnn``, as the assignment's
    ``extract_features``: for SqueezeNet the output of each of ``features[0..12]``
    (13 maps), for EfficientNet-Lite0 the stem then each of the 16 blocks (17 maps),
    for any other model ``cnn.extract_features(x)``.

    ``upto`` (optional): stop after map ``upto`` (the list then has ``upto + 1``
    entries), so a loss that only needs shallow layers does not run the rest.
    An EfficientNet-Lite0 in eval mode runs with its BatchNorms folded into the
    convolutions (same maps up to float rounding, faster).
    """
    if upto is not None:
        total = _num_feature_maps(cnn)
        if total is not None and not 0 <= upto < total:
            raise ValueError(f"extract_features: upto must be a feature-map index in [0, {total - 1}] "
                             f"for {_backbone_name(cnn)}, got {upto}")
    if isinstance(cnn, models.SqueezeNet):
        feats = []
        for i, layer in enumerate(cnn.features):
            x = layer(x)
            feats.append(x)
            if upto is not None and i == upto:
                break
        return feats
    if isinstance(cnn, models.EfficientNetLite0) and not cnn.training:
        return _folded(cnn).features(x, upto)
    if isinstance(cnn, models.EfficientNetLite0):
        x = F.relu6(cnn._bn0(cnn._conv_stem(x)))
        feats = [x]
        for i, block in enumerate(cnn._blocks, start=1):
            if upto is not None and i > upto:
                break
            x = block(x)
            feats.append(x)
        return feats
    if isinstance(cnn, nn.Sequential) and not hasattr(cnn, "extract_features"):
        # the notebook's ``cnn``: a sequence of feature layers, e.g. torchvision's
        # ``squeezenet1_1(pretrained=True).features``: the output of every module
        feats = []
        for i, layer in enumerate(cnn):
            x = layer(x)
            feats.append(x)
            if upto is not None and i == upto:
                break
        return feats
    if not callable(getattr(cnn, "extract_features", None)):
        raise TypeError(f"extract_features: cnn must be an a3ext model (models.squeezenet1_1, "
                        f"models.efficientnet_lite0), an nn.Sequential of feature layers (e.g. torchvision's "
                        f"squeezenet1_1(...).features) or a model with an extract_features method, got "
                        f"{type(cnn).__name__}")
    feats = list(cnn.extract_features(x))
    return feats if upto is None else feats[: upto + 1]


def as_backbone(cnn: nn.Module) -> nn.Module:
    """An a3ext backbone for ``cnn``: a3ext models as they are; an ``nn.Sequential`` of
    SqueezeNet feature layers (the notebook's ``cnn``, e.g. torchvision's
    ``squeezenet1_1(pretrained=True).features``) wrapped in :class:`a3ext.models.SqueezeNet`
    (the same modules, shared, with its SqueezeNet preprocessing and settings)."""
    if isinstance(cnn, nn.Sequential) and not isinstance(cnn, (models.SqueezeNet, models.EfficientNetLite0)):
        wrapper = models.squeezenet1_1()
        wrapper.features = cnn
        return wrapper
    return cnn


# --------------------------------------------------------------------------- losses


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


# --------------------------------------------------------------------------- colour


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


def rgb_to_yiq(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) RGB intensities in [0, 1] -> YIQ (luminance Y, chroma I and Q)."""
    m = _RGB_TO_YIQ.to(rgb.device, rgb.dtype)
    return torch.einsum("ij,njhw->nihw", m, rgb)


def yiq_to_rgb(yiq: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_yiq` (exact matrix inverse; no clamping)."""
    m = torch.linalg.inv(_RGB_TO_YIQ).to(yiq.device, yiq.dtype)
    return torch.einsum("ij,njhw->nihw", m, yiq)


def _to_pixels(x: Tensor, cnn) -> Tensor:
    return x * cnn.pixel_std.to(x.dtype) + cnn.pixel_mean.to(x.dtype)


def _from_pixels(p: Tensor, cnn) -> Tensor:
    return (p - cnn.pixel_mean.to(p.dtype)) / cnn.pixel_std.to(p.dtype)


def _luminance_image(x: Tensor, cnn, match: Tensor | None = None) -> Tensor:
    """The luminance of normalised image ``x`` as a grey 3-channel normalised image; with
    ``match`` (another normalised image), the luminance is shifted and scaled to the mean
    and standard deviation of ``match``'s luminance (Gatys et al.'s luminance matching)."""
    y = rgb_to_yiq(_to_pixels(x, cnn))[:, :1]
    if match is not None:
        ym = rgb_to_yiq(_to_pixels(match, cnn))[:, :1]
        y = (y - y.mean()) / y.std().clamp_min(1e-8) * ym.std() + ym.mean()
    return _from_pixels(y.clamp(0.0, 1.0).expand(-1, 3, -1, -1).contiguous(), cnn)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BackboneSettings:
    """Layers, weights and optimiser schedule of style transfer on one backbone.

    Layer indices index :func:`extract_features`. ``clamp_range`` is in the
    backbone's normalised units (``None``: ``cnn.pixel_range``). ``init_range``: the
    uniform noise of a random start, in normalised units (``None``: the pixel range).
    ``softmax_temperature``: apply :func:`softmax_activations` to the style-layer
    features before the Gram matrix (``None``: plain Gram, as the assignment).
    """

    content_layer: int
    content_weight: float
    style_layers: tuple[int, ...]
    style_weights: tuple[float, ...]
    tv_weight: float
    learning_rate: float = 3.0
    decayed_learning_rate: float = 0.1
    decay_lr_at: int = 180
    clamp_until: int = 190
    clamp_range: tuple[float, float] | None = None
    init_range: tuple[float, float] | None = None
    softmax_temperature: float | None = None
    description: str = ""


#: The assignment's SqueezeNet setting (its Starry Night run): content features[3],
#: style features[1, 4, 6, 7], Adam 3.0 -> 0.1 at 180, clamp [-1.5, 1.5] while t < 190,
#: random start uniform in [0, 1).
SQUEEZENET_SETTINGS = BackboneSettings(
    content_layer=3, content_weight=6e-2, style_layers=(1, 4, 6, 7),
    style_weights=(300000.0, 1000.0, 15.0, 3.0), tv_weight=2e-2,
    clamp_range=(-1.5, 1.5), init_range=(0.0, 1.0),
    description="assignment: SqueezeNet 1.1, content features[3], style features[1,4,6,7]")

#: EfficientNet-Lite0 (the default backbone), chosen by looking at the pictures
#: (docs/images/style_*.png): style at block 0 (16 ch, 1/2 res), blocks 2 and 4 (the last of
#: the 1/4- and 1/8-resolution stages) and block 7 (80 ch, 1/16), equal weights (each
#: layer's initial Gram loss is then of the same order), content at block 4 (1/8 res: keeps
#: shapes, lets textures change) with weight 0.25 at 192 px (1.0 keeps too much of the photo,
#: 0.1 -- used by the starry_night preset -- paints more). Block outputs are linear (no ReLU), so the layers stay
#: shallow: deeper ones add little style and cost time. Adam at 3.0 (the assignment's rate,
#: for SqueezeNet's units) turns every pixel into +-3 steps of noise on this network; 0.05
#: (dropping to 0.005 at 180) in units of 128 grey levels gives clean strokes. The pixel
#: range [-0.992, 1.0] is the clamp. The softmax transform (Wang et al. 2021) did not help
#: here (see softmax_temperature in the README): plain Gram matrices.
EFFICIENTNET_SETTINGS = BackboneSettings(
    content_layer=5, content_weight=0.25, style_layers=(1, 3, 5, 8),
    style_weights=(1.0e3, 1.0e3, 1.0e3, 1.0e3), tv_weight=20.0,
    learning_rate=0.05, decayed_learning_rate=0.005,
    softmax_temperature=None,
    description="EfficientNet-Lite0: content block 4, style blocks 0, 2, 4, 7")


def backbone_settings(cnn: nn.Module) -> BackboneSettings:
    """The default :class:`BackboneSettings` for ``cnn`` (SqueezeNet or EfficientNet-Lite0)."""
    if isinstance(cnn, models.SqueezeNet):
        return SQUEEZENET_SETTINGS
    if isinstance(cnn, models.EfficientNetLite0):
        return EFFICIENTNET_SETTINGS
    raise TypeError(f"backbone_settings: no default settings for {type(cnn).__name__}; expected a "
                    "SqueezeNet or EfficientNetLite0 (pass layers and weights explicitly)")


@functools.lru_cache(maxsize=1)
def default_cnn() -> models.EfficientNetLite0:
    """The embedded default backbone: pretrained EfficientNet-Lite0 (loaded once)."""
    return models.efficientnet_lite0(pretrained=True)


# --------------------------------------------------------------------------- style transfer


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

    def __repr__(self) -> str:  # one line: a notebook cell ending in style_transfer(...) shows this
        losses = self.history.get("total") or [float("nan")]
        return (f"StyleTransferResult(image={tuple(self.image.shape)}, iterations={len(losses)}, "
                f"final loss={losses[-1]:.4g})")
    history: dict[str, list[float]]
    content: Tensor
    styles: list[Tensor]
    settings: dict = field(default_factory=dict)


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
    from tqdm.auto import tqdm

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
    if style_blend_weights is None:
        blend = [1.0 / len(style_images)] * len(style_images)
    else:
        blend = [float(w) for w in style_blend_weights]
        if len(blend) != len(style_images):
            raise ValueError(f"style_transfer: style_blend_weights must have one weight per style image: "
                             f"expected {len(style_images)}, got {len(blend)}")
        if any(w < 0 for w in blend) or sum(blend) <= 0:
            raise ValueError(f"style_transfer: style_blend_weights must be >= 0 with a positive sum, got {blend}")
        blend = [w / sum(blend) for w in blend]
    lr = defaults.learning_rate if learning_rate is None else float(learning_rate)
    lr2 = defaults.decayed_learning_rate if decayed_learning_rate is None else float(decayed_learning_rate)
    decay_at = defaults.decay_lr_at if decay_lr_at is None else int(decay_lr_at)
    clamp_t = defaults.clamp_until if clamp_until is None else int(clamp_until)
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

    content = _load_image(content_image, cnn, image_size, "content_image")
    styles = [_load_image(s, cnn, style_size, "style_image") for s in style_images]
    work_content, work_styles = content, styles
    if preserve_color:
        work_content = _luminance_image(content, cnn)
        work_styles = [_luminance_image(s, cnn, match=content) for s in styles]

    active_style = [(l, w) for l, w in zip(style_layers, style_weights) if w != 0]
    deepest = max([content_layer if content_weight != 0 else 0] + [l for l, _ in active_style])

    layer_temperature: dict[int, float] = {}

    def style_feats(feats: list[Tensor]) -> list[Tensor]:
        if temperature is None:
            return feats
        return [softmax_activations(f, layer_temperature[i]) if i in layer_temperature else f
                for i, f in enumerate(feats)]

    with torch.no_grad():
        content_target = extract_features(work_content, cnn, upto=deepest)[content_layer].clone()
        style_targets = []
        raw_style = [extract_features(s, cnn, upto=max([deepest] + style_layers)) for s in work_styles]
        if temperature is not None:
            # the temperature is in units of the layer's RMS activation over the style image(s),
            # so one number suits layers whose activations differ in scale
            for layer in set(style_layers):
                rms = sum(b * float(f[layer].pow(2).mean().sqrt()) for b, f in zip(blend, raw_style))
                layer_temperature[layer] = float(temperature) * max(rms, 1e-12)
        per_style = [style_feats(f) for f in raw_style]
        for layer in style_layers:
            style_targets.append(sum(b * gram_matrix(f[layer]) for b, f in zip(blend, per_style)))

    gen = torch.Generator().manual_seed(int(seed))
    if init_random:
        lo_i, hi_i = defaults.init_range if defaults.init_range is not None else (None, None)
        u = torch.rand(work_content.shape, generator=gen, dtype=torch.float32)
        if lo_i is None:
            img = low + (high - low) * u
        else:
            img = lo_i + (hi_i - lo_i) * u
    else:
        img = work_content.clone()
    img = img.to(work_content.device).contiguous().requires_grad_(True)

    history: dict[str, list[float]] = {"total": [], "content": [], "style": [], "tv": []}

    def losses() -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feats = extract_features(img, cnn, upto=deepest)
        c = (content_loss(content_weight, feats[content_layer], content_target) if content_weight != 0
             else img.new_zeros(()))
        s = style_loss(style_feats(feats), style_layers, style_targets, style_weights)
        tv = tv_loss(img, tv_weight) if tv_weight != 0 else img.new_zeros(())
        return c + s + tv, c, s, tv

    def record(t: int, parts) -> None:
        for key, value in zip(("total", "content", "style", "tv"), parts):
            history[key].append(float(value.detach()))
        if callback is not None:
            callback(t, img.detach(), {k: v[-1] for k, v in history.items()})

    bar = tqdm(total=num_iterations, desc=f"style transfer ({_backbone_name(cnn)}, {optimizer})",
               disable=not progress, file=sys.stderr, leave=False, dynamic_ncols=True)
    try:
        if optimizer == "adam":
            opt = torch.optim.Adam([img], lr=lr)
            for t in range(num_iterations):
                if t < clamp_t:
                    with torch.no_grad():
                        img.copy_(torch.maximum(torch.minimum(img, clamp_hi), clamp_lo))
                opt.zero_grad()
                parts = losses()
                parts[0].backward()
                record(t, parts)
                if t == decay_at:
                    opt = torch.optim.Adam([img], lr=lr2)
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{history['total'][-1]:.4g}", refresh=False)
        else:
            opt = torch.optim.LBFGS([img], lr=1.0, max_iter=num_iterations, max_eval=num_iterations,
                                    tolerance_grad=-1.0, tolerance_change=-1.0, history_size=100)

            def closure():
                opt.zero_grad()
                parts = losses()
                parts[0].backward()
                record(len(history["total"]), parts)
                bar.update(1)
                bar.set_postfix(loss=f"{history['total'][-1]:.4g}", refresh=False)
                return parts[0]

            opt.step(closure)
    finally:
        bar.close()

    with torch.no_grad():
        out = torch.maximum(torch.minimum(img.detach(), high), low)
        if preserve_color:
            y = rgb_to_yiq(_to_pixels(out, cnn))[:, :1]
            iq = rgb_to_yiq(_to_pixels(content, cnn))[:, 1:]
            out = _from_pixels(yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0.0, 1.0), cnn)
    settings = dict(backbone=_backbone_name(cnn), image_size=image_size, style_size=style_size,
                    content_layer=content_layer, content_weight=content_weight, style_layers=style_layers,
                    style_weights=style_weights, tv_weight=tv_weight, init_random=init_random,
                    style_blend_weights=blend, preserve_color=preserve_color, optimizer=optimizer,
                    num_iterations=num_iterations, learning_rate=lr, decayed_learning_rate=lr2,
                    decay_lr_at=decay_at, clamp_until=clamp_t,
                    clamp_range=None if clamp_range is None else tuple(clamp_range),
                    softmax_temperature=temperature, seed=seed)
    return StyleTransferResult(image=out, pil=cnn.deprocess(out), history=history, content=content,
                               styles=styles, settings=settings)


# --------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """A named run: images, sizes and, per backbone, the loss weights.

    ``squeezenet``: the assignment's arguments (used when the backbone is SqueezeNet);
    ``efficientnet``: overrides of :data:`EFFICIENTNET_SETTINGS` for this run.
    """

    content: str
    style: str
    image_size: int
    style_size: int
    init_random: bool
    squeezenet: BackboneSettings
    efficientnet: BackboneSettings
    description: str = ""


def _sq(content_weight, style_weights, tv_weight) -> BackboneSettings:
    return replace(SQUEEZENET_SETTINGS, content_weight=content_weight, style_weights=tuple(style_weights),
                   tv_weight=tv_weight)


def _eff(style_scale: float = 1.0, content_scale: float = 1.0, **kw) -> BackboneSettings:
    e = EFFICIENTNET_SETTINGS
    return replace(e, content_weight=e.content_weight * content_scale,
                   style_weights=tuple(w * style_scale for w in e.style_weights), **kw)


#: The assignment's three runs (Composition VII is not embedded: the graffiti wall
#: ``graf1`` stands in for the colourful abstract painting), feature inversion and texture
#: synthesis, on the embedded photos.
PRESETS: dict[str, Preset] = {
    "starry_night": Preset(
        "china", "starry_night", 192, 192, False,
        _sq(6e-2, (300000, 1000, 15, 3), 2e-2), _eff(content_scale=0.4),
        "assignment run 3: Starry Night (content weight 6e-2, style 300000/1000/15/3, TV 2e-2)"),
    "scream": Preset(
        "building", "scream", 192, 224, False,
        _sq(3e-2, (200000, 800, 12, 1), 2.0), _eff(),
        "assignment run 2: The Scream (content weight 3e-2, style 200000/800/12/1, TV 2)"),
    "graffiti": Preset(
        "chelsea", "graf1", 192, 512, False,
        _sq(5e-2, (20000, 500, 12, 1), 5e-2), _eff(),
        "assignment run 1 (Composition VII, style size 512) with the graffiti wall: content weight "
        "5e-2, style 20000/500/12/1, TV 5e-2"),
    "feature_inversion": Preset(
        "china", "starry_night", 192, 192, True,
        _sq(6e-2, (0, 0, 0, 0), 2e-2), _eff(style_scale=0.0),
        "feature inversion: reconstruct the content layer's features from noise (style weights 0)"),
    "texture_synthesis": Preset(
        "china", "gravel", 192, 192, True,
        _sq(0.0, (300000, 1000, 15, 3), 2e-2),
        _eff(content_scale=0.0, learning_rate=0.02, decayed_learning_rate=0.002),
        "texture synthesis: match the style Gram matrices from noise (content weight 0)"),
}


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown style preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_arguments(name: str, cnn: nn.Module | None = None) -> dict:
    """The :func:`style_transfer` keyword arguments of preset ``name`` for backbone
    ``cnn`` (default EfficientNet-Lite0): images, sizes, layers, weights, schedule."""
    p = _preset(name)
    cnn = default_cnn() if cnn is None else cnn
    s = p.squeezenet if isinstance(cnn, models.SqueezeNet) else p.efficientnet
    if not isinstance(cnn, (models.SqueezeNet, models.EfficientNetLite0)):
        raise TypeError(f"preset_arguments: presets are defined for SqueezeNet and EfficientNetLite0, "
                        f"got {type(cnn).__name__}")
    return dict(content_image=p.content, style_image=p.style, image_size=p.image_size, style_size=p.style_size,
                content_layer=s.content_layer, content_weight=s.content_weight,
                style_layers=list(s.style_layers), style_weights=list(s.style_weights), tv_weight=s.tv_weight,
                init_random=p.init_random, learning_rate=s.learning_rate,
                decayed_learning_rate=s.decayed_learning_rate, decay_lr_at=s.decay_lr_at,
                clamp_until=s.clamp_until, clamp_range=s.clamp_range, softmax_temperature=s.softmax_temperature)


def run_preset(name: str, cnn: nn.Module | None = None, **overrides) -> StyleTransferResult:
    """Run preset ``name`` (see :data:`PRESETS`) on ``cnn``; keyword ``overrides`` replace
    any :func:`style_transfer` argument (e.g. ``image_size=64, num_iterations=40``)."""
    cnn = default_cnn() if cnn is None else cnn
    kwargs = preset_arguments(name, cnn)
    if "image_size" in overrides and "style_size" not in overrides:
        # keep the preset's style/content size ratio
        kwargs["style_size"] = max(1, round(kwargs["style_size"] * overrides["image_size"] / kwargs["image_size"]))
    kwargs.update(overrides)
    return style_transfer(cnn=cnn, **kwargs)


# --------------------------------------------------------------------------- pictures


def save_comparison(result: StyleTransferResult, path: str | os.PathLike, cnn: nn.Module | None = None,
                    content_name: str = "", style_names: Sequence[str] = (), title: str = "",
                    dpi: int = 80) -> str:
    """A titled PNG: content | style image(s) | result, side by side. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    import numpy as np

    cnn = default_cnn() if cnn is None else cnn
    panels = [(cnn.deprocess(result.content), f"content: {content_name}" if content_name else "content")]
    blend = result.settings.get("style_blend_weights", [1.0] * len(result.styles))
    for i, s in enumerate(result.styles):
        name = style_names[i] if i < len(style_names) else f"style {i + 1}"
        label = f"style: {name}" + (f" ({blend[i]:.2f})" if len(result.styles) > 1 else "")
        panels.append((cnn.deprocess(s), label))
    st = result.settings
    panels.append((result.pil, f"result: {st.get('backbone', '')}, {st.get('num_iterations', '')} "
                               f"{st.get('optimizer', '')} steps"
                               + (", colour kept" if st.get("preserve_color") else "")))
    heights = 2.6
    widths = [heights * im.width / im.height for im, _ in panels]
    fig = Figure(figsize=(sum(widths) + 0.2 * len(panels), heights + (0.8 if title else 0.45)), dpi=dpi)
    FigureCanvasAgg(fig)
    total = sum(widths)
    x = 0.0
    top = 1.0 - (0.8 if title else 0.45) / (heights + (0.8 if title else 0.45))
    for (im, label), w in zip(panels, widths):
        ax = fig.add_axes((x / total * 0.98 + 0.01, 0.02, w / total * 0.96, top - 0.04))
        ax.imshow(np.asarray(im))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
        x += w
    if title:
        fig.suptitle(title, fontsize=10)
    out = os.fspath(path)
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, format="png")
    return out


# --------------------------------------------------------------------------- CLI


_positive_int = positive_int  # shared argparse type (a3ext._util)

def _float_list(text: str) -> list[float]:
    import argparse

    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    import argparse

    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _cli(args) -> int:
    """``a3ext style``: returns the exit status (2 for bad input)."""
    try:
        return _cli_run(args)
    except (assets.UnknownAssetError, FileNotFoundError, models.WeightsError, ValueError, TypeError) as exc:
        print(f"a3ext style: {exc}", file=sys.stderr)
        return 2


def _cli_run(args) -> int:
    import json

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if model == "auto":
        model = "squeezenet" if args.weights else "efficientnet"
    if model == "squeezenet":
        if not args.weights:
            print("a3ext style: warning: --model squeezenet without --weights uses a randomly initialised "
                  "SqueezeNet (no pretrained SqueezeNet ships offline)", file=sys.stderr)
        cnn = models.squeezenet1_1(weights=args.weights)
    else:
        if args.weights:
            raise ValueError("--weights is for --model squeezenet; EfficientNet-Lite0 uses its embedded weights")
        cnn = default_cnn()
    if args.preset:
        kwargs = preset_arguments(args.preset, cnn)
    else:
        if not args.content or not args.style:
            raise ValueError("expected --content and --style (or --preset NAME)")
        s = backbone_settings(cnn)
        kwargs = dict(image_size=args.size or 192, style_size=args.style_size or args.size or 192,
                      content_layer=s.content_layer, content_weight=s.content_weight,
                      style_layers=list(s.style_layers), style_weights=list(s.style_weights),
                      tv_weight=s.tv_weight, init_random=False)
    if args.content:
        kwargs["content_image"] = args.content
    if args.style:
        kwargs["style_image"] = args.style if len(args.style) > 1 else args.style[0]
    if args.size:
        if args.preset and not args.style_size:
            kwargs["style_size"] = max(1, round(kwargs["style_size"] * args.size / kwargs["image_size"]))
        kwargs["image_size"] = args.size
    if args.style_size:
        kwargs["style_size"] = args.style_size
    for name in ("content_layer", "content_weight", "style_layers", "style_weights", "tv_weight",
                 "softmax_temperature"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.plain_gram:
        kwargs["softmax_temperature"] = None
    if args.init is not None:
        kwargs["init_random"] = args.init == "random"
    if args.style_blend:
        kwargs["style_blend_weights"] = [w for chunk in args.style_blend for w in chunk]
    result = style_transfer(cnn=cnn, optimizer=args.optimizer, num_iterations=args.iters,
                            preserve_color=args.preserve_color, seed=args.seed, progress=not args.no_progress,
                            **kwargs)
    style_names = kwargs["style_image"] if isinstance(kwargs["style_image"], list) else [kwargs["style_image"]]
    style_names = [os.path.basename(str(s)) for s in style_names]
    title = ("style transfer" + (f" -- preset {args.preset}" if args.preset else "")
             + f" (final loss {result.history['total'][-1]:.4g})")
    out = save_comparison(result, args.out, cnn, content_name=os.path.basename(str(kwargs["content_image"])),
                          style_names=style_names, title=title)
    if args.result:
        os.makedirs(os.path.dirname(os.path.abspath(args.result)), exist_ok=True)
        result.pil.save(args.result)
    summary = {"out": out, "result": args.result, "final_loss": result.history["total"][-1],
               "settings": result.settings}
    print(json.dumps(summary, indent=None, default=str))
    return 0


def register_cli(subparsers) -> None:
    """Add ``style`` to an argparse subparsers object (``set_defaults(func=...)``, the
    function returns the exit status)."""
    p = subparsers.add_parser(
        "style", help="neural style transfer, feature inversion, texture synthesis",
        description="Neural style transfer (Gatys et al.) on EfficientNet-Lite0 (default) or SqueezeNet 1.1 "
                    "(with --weights). Writes a PNG with content, style(s) and result side by side. Presets: "
                    + ", ".join(f"{k} ({v.content} + {v.style})" for k, v in PRESETS.items()) + ".")
    p.add_argument("--content", metavar="NAME_OR_PATH", help="content image: asset name or image file")
    p.add_argument("--style", action="append", metavar="NAME_OR_PATH",
                   help="style image: asset name or image file (repeat to blend several)")
    p.add_argument("--style-blend", action="append", type=_float_list, metavar="W[,W...]",
                   help="blend weights of the style images (one per --style; normalised to sum 1)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="PNG figure to write (content | style | result)")
    p.add_argument("--result", metavar="FILE.png", help="also write the bare result image here")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named run (images, sizes, weights)")
    p.add_argument("--size", type=_positive_int, default=None,
                   help="content image shorter side in pixels (default 192 or the preset's)")
    p.add_argument("--style-size", type=_positive_int, default=None, help="style image shorter side "
                   "(default: --size, or the preset's)")
    p.add_argument("--iters", type=_positive_int, default=200, help="iterations / function evaluations (default 200)")
    p.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam",
                   help="adam: the assignment's schedule (default); lbfgs: L-BFGS as in neural-style")
    p.add_argument("--preserve-color", action="store_true",
                   help="luminance-only transfer: keep the content image's colours")
    p.add_argument("--init", choices=("content", "random"), default=None,
                   help="start from the content image or from noise (default: content, or the preset's)")
    p.add_argument("--model", choices=("auto", "efficientnet", "squeezenet"), default="auto",
                   help="backbone (default auto: squeezenet if --weights is given, else EfficientNet-Lite0)")
    p.add_argument("--weights", metavar="PATH", help="torchvision SqueezeNet 1.1 state dict")
    p.add_argument("--content-layer", type=int, default=None, help="feature-map index of the content loss")
    p.add_argument("--content-weight", type=float, default=None, help="content loss weight")
    p.add_argument("--style-layers", type=_int_list, default=None, metavar="L[,L...]", help="style layer indices")
    p.add_argument("--style-weights", type=_float_list, default=None, metavar="W[,W...]",
                   help="style loss weights, one per style layer")
    p.add_argument("--tv-weight", type=float, default=None, help="total-variation weight")
    p.add_argument("--softmax-temperature", type=float, default=None,
                   help="softmax-transform the style features before the Gram matrix (Wang et al. 2021)")
    p.add_argument("--plain-gram", action="store_true", help="no softmax transform (plain Gram matrices)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start (default 0)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="intra-op CPU threads (default: torch's; 1 is much faster on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli)
