"""Captioning data helpers with the assignment's names (``coco_utils``):
:func:`load_coco_data`, :func:`decode_captions`, :func:`sample_coco_minibatch`.
Implemented in :mod:`a3ext.captioning.data`."""
from .captioning.data import decode_captions, load_coco_data, sample_coco_minibatch

__all__ = ["load_coco_data", "decode_captions", "sample_coco_minibatch"]
