"""The backbone side of style transfer: feature maps of an image through a CNN
(:func:`extract_features`, the assignment's function), the notebook's ``nn.Sequential``
wrapped as a backbone (:func:`as_backbone`), the default backbone (:func:`default_cnn`)
and EfficientNet-Lite0 with its BatchNorms folded into the convolutions (what
``extract_features`` runs for an eval-mode EfficientNet: the same maps, faster).

May import: torch and :mod:`a3ext.models`; nothing else of a3ext (the other style
modules build on this one).
"""
from __future__ import annotations

import functools
import itertools
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import models

__all__ = ["extract_features", "as_backbone", "default_cnn"]


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



@functools.lru_cache(maxsize=1)
def default_cnn() -> models.EfficientNetLite0:
    """The embedded default backbone: pretrained EfficientNet-Lite0 (loaded once)."""
    return models.efficientnet_lite0(pretrained=True)

