"""a3ext: C++-accelerated PyTorch ops and tools for the RNN captioning / network
visualization / style transfer / GAN assignment.

Importing the package loads the compiled custom ops (``torch.ops.a3ext.*``) and
registers their fake kernels and autograd formulas (:mod:`a3ext.ops`).

May import: ``a3ext._C`` (the compiled ops) and ``a3ext.ops``, after torch; nothing above them
(the parts are imported by name, e.g. ``import a3ext.captioning``).
"""
from __future__ import annotations

import os as _os
import sys as _sys


def _idle_threads_sleep() -> bool:
    """Make idle OpenMP threads sleep instead of spin-waiting, if we can and nobody chose.

    torch's intra-op pool, MKL and oneDNN (and a3ext's own ``at::parallel_for``) all run
    on torch's libgomp, whose idle threads spin for a long time at every barrier by
    default; beside other busy processes the spinning threads take the cores the working
    thread needs (a training loop 5-9x slower beside one busy process instead of ~1.5x).
    libgomp reads ``OMP_WAIT_POLICY`` once, when torch loads, so this only works when
    a3ext is imported before torch; an explicit ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``
    is left alone. Returns True when it set the policy. See README "Reliability"."""
    if "torch" in _sys.modules or "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        return False
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


_idle_threads_sleep()

import torch  # noqa: E402  (before the compiled library, which links against libtorch)

__version__ = "0.1.0"

_REBUILD_HINT = (
    "Rebuild a3ext against the installed torch from the source checkout with\n"
    "    pip install --no-build-isolation --force-reinstall --no-deps -e .\n"
    "(or run `bash scripts/setup.sh`)."
)


def _load_library():
    try:
        from . import _C
    except ImportError as exc:  # missing, or built against another torch (undefined symbols)
        raise ImportError(
            f"a3ext: the compiled library a3ext._C could not be loaded with torch "
            f"{torch.__version__}: {exc}\n{_REBUILD_HINT}"
        ) from exc
    built = getattr(_C, "torch_version", "unknown")
    if built != torch.__version__:
        raise ImportError(
            f"a3ext: the compiled library was built against torch {built}, but torch "
            f"{torch.__version__} is installed; custom ops are tied to one torch version.\n"
            f"{_REBUILD_HINT}"
        )
    return _C


_C = _load_library()

from . import ops  # noqa: E402  (registers fake kernels and autograd)

__all__ = ["ops", "__version__"]
