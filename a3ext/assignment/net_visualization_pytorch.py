"""The network-visualization notebook's functions (Q3): ``compute_saliency_maps``,
``make_fooling_image`` (returns the image), ``create_class_visualization(target_y,
model, dtype, **kwargs)`` (returns a PIL image), and its helpers ``preprocess(img,
size=224)``, ``deprocess(img, should_rescale=True)``, ``rescale``, ``blur_image``
(in place), ``jitter``, with :data:`SQUEEZENET_MEAN` / :data:`SQUEEZENET_STD`.

May import: ``a3ext.imaging``, ``a3ext.visualization.attribution``,
``a3ext.visualization.synthesis``.
"""
from ..imaging import SQUEEZENET_MEAN, SQUEEZENET_STD, blur_image, deprocess, jitter, preprocess, rescale
from ..visualization.attribution import compute_saliency_maps
from ..visualization.synthesis import create_class_visualization, make_fooling_image

__all__ = ["SQUEEZENET_MEAN", "SQUEEZENET_STD", "preprocess", "deprocess", "rescale", "blur_image", "jitter",
           "compute_saliency_maps", "make_fooling_image", "create_class_visualization"]
