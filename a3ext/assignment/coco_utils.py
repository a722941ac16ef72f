"""The assignment's ``coco_utils``: ``load_coco_data(base_dir=..., max_train=None,
pca_features=True)`` (default: the COCO files where the assignment keeps them, else
the embedded dataset), ``decode_captions``, ``sample_coco_minibatch``.

May import: ``a3ext.captioning.data``.
"""
from ..captioning.data import ASSIGNMENT_BASE_DIR as BASE_DIR
from ..captioning.data import decode_captions, load_coco_data, sample_coco_minibatch

__all__ = ["BASE_DIR", "load_coco_data", "decode_captions", "sample_coco_minibatch"]
