"""Pictures: heatmaps over photos and the PNG figures the CLI writes.

Uses matplotlib's object API (``matplotlib.figure.Figure`` with the Agg
canvas), never ``pyplot``, so nothing here changes a global backend or needs
a display.

May import: no other a3ext module; outside a3ext: PIL, matplotlib, numpy, torch.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["normalize_heatmap", "colorize", "overlay_heatmap", "Panel", "save_figure"]


def _as_numpy_map(heatmap) -> np.ndarray:
    if isinstance(heatmap, torch.Tensor):
        heatmap = heatmap.detach().to("cpu", torch.float64).numpy()
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim == 3 and h.shape[0] == 1:
        h = h[0]
    if h.ndim != 2:
        raise ValueError(f"heatmap must be (H, W) (or (1, H, W)), got shape {h.shape}")
    return h


def normalize_heatmap(heatmap, percentile: float = 99.0, symmetric: bool = False) -> np.ndarray:
    """(H, W) float64 in [0, 1] from a tensor/array heatmap.

    Non-negative maps: divided by their ``percentile``-th percentile and clipped,
    so a few extreme pixels do not wash the rest out (``percentile=100`` is a
    plain max scaling). Maps with negative values: min-max scaled after clipping
    both tails at that percentile; ``symmetric=True`` maps 0 to 0.5 instead.
    NaN/inf become 0.
    """
    h = np.nan_to_num(_as_numpy_map(heatmap), nan=0.0, posinf=0.0, neginf=0.0)
    if not 0 < percentile <= 100:
        raise ValueError(f"normalize_heatmap: percentile must be in (0, 100], got {percentile!r}")
    if symmetric:
        top = np.percentile(np.abs(h), percentile)
        return np.clip(0.5 + 0.5 * h / top, 0.0, 1.0) if top > 0 else np.full_like(h, 0.5)
    if h.min() >= 0:
        top = np.percentile(h, percentile)
        return np.clip(h / top, 0.0, 1.0) if top > 0 else np.zeros_like(h)
    lo, hi = np.percentile(h, 100 - percentile), np.percentile(h, percentile)
    return np.clip((h - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(h)


def colorize(normalized: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 RGB through matplotlib colormap ``cmap``."""
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"colorize: unknown matplotlib colormap {cmap!r}") from None
    rgba = colormap(np.clip(np.asarray(normalized, dtype=np.float64), 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay_heatmap(image, heatmap, cmap: str = "jet", alpha: float = 0.5, percentile: float = 99.0):
    """Heatmap over a photo: an RGB :class:`PIL.Image.Image` the size of ``image``.

    ``image``: a PIL image or an (H, W, 3) uint8 array. ``heatmap``: (H', W')
    tensor or array (saliency, Grad-CAM, ...), normalised with
    :func:`normalize_heatmap` (``percentile``), resized bilinearly to the photo,
    coloured with ``cmap`` and alpha-blended: ``(1 - alpha) * photo + alpha * colour``.
    """
    from PIL import Image

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay_heatmap: alpha must be in [0, 1], got {alpha!r}")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"overlay_heatmap: image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"overlay_heatmap: image must be a PIL image or an (H, W, 3) uint8 array, "
                        f"got {type(image).__name__}")
    photo = np.asarray(image.convert("RGB"), dtype=np.float64)
    norm = normalize_heatmap(heatmap, percentile)
    resized = Image.fromarray(norm.astype(np.float32), mode="F").resize(image.size, Image.Resampling.BILINEAR)
    colour = colorize(np.asarray(resized), cmap).astype(np.float64)
    blend = (1.0 - alpha) * photo + alpha * colour
    return Image.fromarray(np.clip(blend + 0.5, 0, 255).astype(np.uint8))


@dataclass
class Panel:
    """One cell of a figure: an RGB image (PIL or (H, W, 3) uint8) or an (H, W)
    map drawn with ``cmap`` (then ``colorbar`` adds a scale; values above
    ``vmax`` saturate), and its title."""

    image: object
    title: str = ""
    cmap: str | None = None
    colorbar: bool = False
    vmax: float | None = None


def save_figure(rows: Sequence[Sequence[Panel]], path: str | os.PathLike, suptitle: str = "",
                cell_inches: float = 3.2, dpi: int = 100) -> str:
    """Draw a grid of :class:`Panel` rows (rows may differ in length) and save it
    as a PNG at ``path`` (parent folders created). Returns the path as str."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("save_figure: nothing to draw (no panels)")
    top_pad = 0.45 if suptitle else 0.0
    fig = Figure(figsize=(cell_inches * n_cols, cell_inches * n_rows + 0.35 * n_rows + top_pad), dpi=dpi)
    FigureCanvasAgg(fig)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            ax = fig.add_subplot(n_rows, n_cols, i * n_cols + j + 1)
            img = panel.image
            if isinstance(img, Image.Image):
                img = np.asarray(img.convert("RGB"))
            elif isinstance(img, torch.Tensor):
                img = img.detach().cpu().numpy()
            shown = ax.imshow(img, cmap=panel.cmap if np.ndim(img) == 2 else None, interpolation="nearest",
                              vmax=panel.vmax if np.ndim(img) == 2 else None)
            if panel.colorbar and np.ndim(img) == 2:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            ax.set_title(panel.title, fontsize=9)
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    out = os.fspath(path)
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(out, format="png")
    return out
