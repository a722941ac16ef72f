"""The assignment's ``captioning_solver``: :class:`a3ext.captioning.CaptioningSolver`."""
from ..captioning.solver import CaptioningSolver

__all__ = ["CaptioningSolver"]
