"""a3ext: C++-accelerated PyTorch ops and tools for the RNN captioning / network
visualization / style transfer / GAN assignment.

Importing the package loads the compiled custom ops (``torch.ops.a3ext.*``) and
registers their fake kernels and autograd formulas (:mod:`a3ext.ops`).
"""
from __future__ import annotations

import torch  # must come first: the compiled library links against libtorch

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
