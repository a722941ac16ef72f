"""The style-transfer notebook's functions (Q4): ``extract_features(x, cnn)`` (any
``nn.Sequential`` of feature layers, e.g. torchvision's ``squeezenet1_1(...).features``,
or an a3ext model), ``content_loss``, ``gram_matrix``, ``style_loss``, ``tv_loss``,
``style_transfer``, and its helpers ``preprocess(img, size=512)``, ``deprocess``,
``rescale``, ``rel_error``, ``features_from_img(imgpath, imgsize, *, cnn=None)``.

May import: ``a3ext.imaging``, ``a3ext.reference``, ``a3ext.style``; outside a3ext: PIL.
"""
from ..imaging import SQUEEZENET_MEAN, SQUEEZENET_STD, deprocess as _deprocess, rescale
from ..imaging import preprocess as _preprocess
from ..reference import rel_error
from ..style import content_loss, extract_features, gram_matrix, style_loss, style_transfer, tv_loss

__all__ = ["SQUEEZENET_MEAN", "SQUEEZENET_STD", "preprocess", "deprocess", "rescale", "rel_error",
           "features_from_img", "extract_features", "content_loss", "gram_matrix", "style_loss", "tv_loss",
           "style_transfer"]


def preprocess(img, size=512):
    """The style notebook's ``preprocess`` (its default size is 512):
    :func:`a3ext.imaging.preprocess`."""
    return _preprocess(img, size)


def deprocess(img):
    """The style notebook's ``deprocess`` (always min-max rescaled):
    :func:`a3ext.imaging.deprocess`."""
    return _deprocess(img, should_rescale=True)


def features_from_img(imgpath, imgsize, *, cnn=None):
    """The notebook's ``features_from_img(imgpath, imgsize)``: ``(extract_features(img,
    cnn), img)`` for the image file at ``imgpath`` resized to shorter side ``imgsize``
    (SqueezeNet preprocessing; on ``cnn``'s device and dtype). The notebook reads a
    global ``cnn``; here it is the keyword ``cnn`` (default: a3ext's style backbone,
    :func:`a3ext.style.default_cnn`)."""
    from PIL import Image

    from ..style import default_cnn

    if cnn is None:
        cnn = default_cnn()
    with Image.open(imgpath) as im:
        img = preprocess(im.convert("RGB"), size=imgsize)
    p = next(cnn.parameters(), None)
    if p is not None:
        img = img.to(p.device, p.dtype)
    return extract_features(img, cnn), img
