"""The assignment's ``classifiers.rnn``: :class:`a3ext.captioning.CaptioningRNN`
(numpy dtypes, ``params``, ``loss -> (loss, grads)`` for numpy inputs).

May import: ``a3ext.captioning.model``.
"""
from ...captioning.model import CaptioningRNN

__all__ = ["CaptioningRNN"]
