"""Per-backbone settings of style transfer: layers, loss weights and the optimiser
schedule (:class:`BackboneSettings`), the assignment's SqueezeNet setting, the one
chosen here for EfficientNet-Lite0, and :func:`backbone_settings` picking one for a CNN.

May import: :mod:`a3ext.models` (to tell the backbones apart); no other style module.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .. import models

__all__ = ["BackboneSettings", "SQUEEZENET_SETTINGS", "EFFICIENTNET_SETTINGS", "backbone_settings"]


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
