"""The assignment's ``data_utils.load_imagenet_val``: see
:func:`a3ext.datasets.load_imagenet_val`.

May import: ``a3ext.datasets``.
"""
from ..datasets import load_imagenet_val

__all__ = ["load_imagenet_val"]
