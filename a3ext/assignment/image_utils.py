"""The assignment's ``image_utils``: :data:`SQUEEZENET_MEAN`, :data:`SQUEEZENET_STD`,
``preprocess_image``, ``deprocess_image``, ``image_from_url``, ``load_image`` (and the
notebooks' torch ``blur_image``, which replaces the numpy conv-based one).

May import: ``a3ext.imaging``.
"""
from ..imaging import (SQUEEZENET_MEAN, SQUEEZENET_STD, blur_image, deprocess_image, image_from_url, load_image,
                       preprocess_image)

__all__ = ["SQUEEZENET_MEAN", "SQUEEZENET_STD", "preprocess_image", "deprocess_image", "image_from_url",
           "load_image", "blur_image"]
