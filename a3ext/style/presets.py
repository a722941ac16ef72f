"""Named style-transfer runs: the assignment's three runs, feature inversion and texture
synthesis on the embedded photos (:data:`PRESETS`), each with weights per backbone;
:func:`preset_arguments` gives a preset's :func:`style_transfer` arguments and
:func:`run_preset` runs it.

May import: :mod:`a3ext.models` and the style modules :mod:`.settings`, :mod:`.features`
and :mod:`.transfer`; not :mod:`.figures` or :mod:`.cli`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from .. import models
from .features import default_cnn
from .settings import EFFICIENTNET_SETTINGS, SQUEEZENET_SETTINGS, BackboneSettings
from .transfer import StyleTransferResult, style_transfer

__all__ = ["Preset", "PRESETS", "preset_arguments", "run_preset"]


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

