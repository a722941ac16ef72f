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

Modules, each importing only modules listed before it (each says what it may import):
:mod:`.features` (feature maps, the backbones, BatchNorm folding), :mod:`.losses`
(content, Gram, style, total variation, softmax transform), :mod:`.color` (YIQ and
pixel helpers), :mod:`.settings` (per-backbone layers, weights and schedule),
:mod:`.transfer` (:func:`style_transfer` in six steps and its result),
:mod:`.presets` (the named runs), :mod:`.figures` (the comparison PNG), :mod:`.cli`
(``a3ext style``). This package re-exports their public names (and ``_to_pixels``,
which tests and the demo use), so ``from a3ext import style`` keeps working.
"""
from .cli import register_cli
from .color import _to_pixels, rgb_to_yiq, yiq_to_rgb
from .features import as_backbone, default_cnn, extract_features
from .figures import save_comparison
from .losses import content_loss, gram_matrix, softmax_activations, style_loss, tv_loss
from .presets import PRESETS, Preset, preset_arguments, run_preset
from .settings import EFFICIENTNET_SETTINGS, SQUEEZENET_SETTINGS, BackboneSettings, backbone_settings
from .transfer import StyleTransferResult, style_transfer

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
