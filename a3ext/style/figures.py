"""The style-transfer figure: content | style image(s) | result side by side, as a
titled PNG (:func:`save_comparison`). matplotlib's object API on the Agg canvas, never
``pyplot``, so nothing here changes a global backend or needs a display.

May import: matplotlib, numpy and the style modules :mod:`.features` and
:mod:`.transfer`; not :mod:`.presets` or :mod:`.cli`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from .features import default_cnn
from .transfer import StyleTransferResult

__all__ = ["save_comparison"]


def save_comparison(result: StyleTransferResult, path: str | os.PathLike, cnn: nn.Module | None = None,
                    content_name: str = "", style_names: Sequence[str] = (), title: str = "",
                    dpi: int = 80) -> str:
    """A titled PNG: content | style image(s) | result, side by side. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    import numpy as np

    cnn = default_cnn() if cnn is None else cnn
    panels = [(cnn.deprocess(result.content), f"content: {content_name}" if content_name else "content")]
    blend = result.settings.get("style_blend_weights", [1.0] * len(result.styles))
    for i, s in enumerate(result.styles):
        name = style_names[i] if i < len(style_names) else f"style {i + 1}"
        label = f"style: {name}" + (f" ({blend[i]:.2f})" if len(result.styles) > 1 else "")
        panels.append((cnn.deprocess(s), label))
    st = result.settings
    panels.append((result.pil, f"result: {st.get('backbone', '')}, {st.get('num_iterations', '')} "
                               f"{st.get('optimizer', '')} steps"
                               + (", colour kept" if st.get("preserve_color") else "")))
    heights = 2.6
    widths = [heights * im.width / im.height for im, _ in panels]
    fig = Figure(figsize=(sum(widths) + 0.2 * len(panels), heights + (0.8 if title else 0.45)), dpi=dpi)
    FigureCanvasAgg(fig)
    total = sum(widths)
    x = 0.0
    top = 1.0 - (0.8 if title else 0.45) / (heights + (0.8 if title else 0.45))
    for (im, label), w in zip(panels, widths):
        ax = fig.add_axes((x / total * 0.98 + 0.01, 0.02, w / total * 0.96, top - 0.04))
        ax.imshow(np.asarray(im))
        ax.set_title(label, fontsize=9)
        ax.axis("off")
        x += w
    if title:
        fig.suptitle(title, fontsize=10)
    out = os.fspath(path)
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    fig.savefig(out, format="png")
    return out

