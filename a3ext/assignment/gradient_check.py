"""The assignment's ``gradient_check``: centered-difference gradients (``x`` perturbed in
place and restored) and ``rel_error``.

May import: ``a3ext.reference``.
"""
from ..reference import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "rel_error"]
