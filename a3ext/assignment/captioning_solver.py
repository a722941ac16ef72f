"""The assignment's ``captioning_solver``: :class:`a3ext.captioning.CaptioningSolver`.

May import: ``a3ext.captioning.solver``.
"""
from ..captioning.solver import CaptioningSolver

__all__ = ["CaptioningSolver"]
