"""The assignment's ``optim``: ``sgd``, ``adam`` (and ``sgd_momentum``, ``rmsprop``).

May import: ``a3ext.captioning.optim``.
"""
from ..captioning.optim import adam, rmsprop, sgd, sgd_momentum

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam"]
