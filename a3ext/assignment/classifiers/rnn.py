"""The assignment's ``classifiers.rnn``: :class:`a3ext.captioning.CaptioningRNN`
(numpy dtypes, ``params``, ``loss -> (loss, grads)`` for numpy inputs)."""
from ...captioning.model import CaptioningRNN

__all__ = ["CaptioningRNN"]
