"""Image helpers with the assignment's names and semantics, shared by the network
visualization and style-transfer parts (and re-exported by :mod:`a3ext.assignment`).

* :data:`SQUEEZENET_MEAN`, :data:`SQUEEZENET_STD`: the ImageNet statistics the
  assignment normalises with (float32 numpy arrays, RGB, intensities in [0, 1]).
* :func:`preprocess` / :func:`deprocess` / :func:`rescale`: the notebooks' torch
  transforms (resize the shorter side, to tensor, normalise, add a batch axis; and
  back to a PIL image), written without torchvision.
* :func:`blur_image` (in place, as the notebook's) and :func:`jitter`.
* :func:`load_image`, :func:`image_from_url`, :func:`preprocess_image`,
  :func:`deprocess_image`: the assignment's ``image_utils`` (numpy).

May import: numpy, torch, Pillow, :mod:`a3ext.visualization.synthesis` (the blur).
"""
from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SQUEEZENET_MEAN", "SQUEEZENET_STD", "preprocess", "deprocess", "rescale", "blur_image", "jitter",
    "load_image", "image_from_url", "preprocess_image", "deprocess_image", "ImageDownloadError",
]

SQUEEZENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
SQUEEZENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class ImageDownloadError(OSError):
    """:func:`image_from_url` could not fetch or decode an image (names the URL and why)."""


def _pil(img, fn: str):
    from PIL import Image

    if isinstance(img, Image.Image):
        return img
    if isinstance(img, np.ndarray) and img.ndim in (2, 3):
        arr = img
        if arr.dtype != np.uint8:
            if arr.dtype.kind == "f" and arr.size and arr.max() <= 1.0:
                arr = arr * 255.0
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return Image.fromarray(arr)
    raise TypeError(f"{fn}: img must be a PIL image or an (H, W[, 3]) numpy array, got {type(img).__name__}")


def preprocess(img, size: int = 224) -> torch.Tensor:
    """The notebooks' ``preprocess``: resize the shorter side to ``size`` (bilinear,
    aspect ratio kept, as torchvision's ``Resize(size)``), scale to [0, 1], normalise
    with :data:`SQUEEZENET_MEAN` / :data:`SQUEEZENET_STD`, add a batch axis:
    PIL image (or uint8 (H, W, 3) array) -> float32 tensor (1, 3, H', W')."""
    from PIL import Image

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"preprocess: size must be a positive int, got {size!r}")
    img = _pil(img, "preprocess").convert("RGB")
    w, h = img.size
    size = int(size)
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.from_numpy(SQUEEZENET_MEAN).view(3, 1, 1)) / torch.from_numpy(SQUEEZENET_STD).view(3, 1, 1)
    return x[None].contiguous()


def rescale(x):
    """Min-max stretch to [0, 1]: ``(x - min) / (max - min)``."""
    low, high = x.min(), x.max()
    return (x - low) / (high - low)


def deprocess(img: torch.Tensor, should_rescale: bool = True):
    """The notebooks' ``deprocess``: the first image of a (N, 3, H, W) tensor
    de-normalised with the SqueezeNet statistics, min-max stretched to [0, 1] when
    ``should_rescale`` (the default), and returned as a PIL image (intensities
    truncated to 0-255 as ``ToPILImage`` does; values outside [0, 1] are clipped
    first rather than wrapping around)."""
    from PIL import Image

    if not isinstance(img, torch.Tensor):
        raise TypeError(f"deprocess: img must be a (N, 3, H, W) torch.Tensor, got {type(img).__name__}")
    if img.dim() != 4 or img.shape[1] != 3 or img.shape[0] < 1:
        raise ValueError(f"deprocess: img must have shape (N, 3, H, W) with N >= 1, got {tuple(img.shape)}")
    x = img[0].detach().cpu().to(torch.float32)
    x = x * torch.from_numpy(SQUEEZENET_STD).view(3, 1, 1) + torch.from_numpy(SQUEEZENET_MEAN).view(3, 1, 1)
    if should_rescale:
        x = rescale(x)
    x = (x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def blur_image(X: torch.Tensor, sigma: float = 1) -> torch.Tensor:
    """The notebook's ``blur_image``: Gaussian blur of (N, C, H, W) images over H and W
    (``scipy.ndimage.gaussian_filter1d`` along axes 2 and 3, computed in torch), written
    back into ``X`` in place; returns ``X``."""
    from .visualization.synthesis import gaussian_blur

    if not isinstance(X, torch.Tensor):
        raise TypeError(f"blur_image: X must be a (N, C, H, W) torch.Tensor, got {type(X).__name__}")
    with torch.no_grad():
        X.copy_(gaussian_blur(X.detach(), sigma))
    return X


def jitter(X: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """The notebook's ``jitter``: roll (N, C, H, W) images ``ox`` pixels along W and
    ``oy`` along H (a new tensor); ``jitter(jitter(X, ox, oy), -ox, -oy)`` is ``X``."""
    from .visualization.synthesis import jitter as _jitter

    return _jitter(X, ox, oy)


def load_image(filename, size: int | None = None) -> np.ndarray:
    """The assignment's ``image_utils.load_image``: an image file as a uint8 (H, W, 3)
    array; with ``size``, resized so that its shorter side is ``size``."""
    from PIL import Image, UnidentifiedImageError

    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: no image file at {path}")
    try:
        with Image.open(path) as im:
            img = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"load_image: {path} is not a readable image ({exc})") from exc
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"load_image: size must be a positive int or None, got {size!r}")
        w, h = img.size
        scale = float(size) / min(w, h)
        img = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy()


def image_from_url(url, timeout: float = 30.0, *, base_dir=None) -> np.ndarray:
    """The assignment's ``image_utils.image_from_url``: fetch an image and return it as a
    uint8 (H, W, 3) array.

    ``url``: an ``http(s)://`` or ``file://`` URL, or a local path. A relative path
    that does not exist from the current directory is looked up under ``base_dir``,
    else under the default captioning data folder (the embedded dataset's ``urls`` are
    such relative paths; see :func:`a3ext.captioning.data.default_data_dir`). Raises
    :class:`ImageDownloadError` naming the URL when it cannot be fetched or decoded
    (the assignment printed the error and returned None)."""
    from PIL import Image, UnidentifiedImageError

    url = str(url)
    if "://" not in url:
        path = Path(url)
        if not path.is_absolute() and not path.exists():
            if base_dir is None:
                from .captioning.data import default_data_dir

                base_dir = default_data_dir(make=False)
            path = Path(base_dir) / url
        if not path.is_file():
            raise ImageDownloadError(f"image_from_url: no image at {url!r} (looked for {path})")
        data = path.read_bytes()
    else:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as f:
                data = f.read()
        except urllib.error.HTTPError as exc:
            raise ImageDownloadError(f"image_from_url: HTTP error {exc.code} for {url}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ImageDownloadError(f"image_from_url: cannot fetch {url}: {reason}") from exc
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDownloadError(f"image_from_url: {url} is not an image ({len(data)} bytes)") from exc


def preprocess_image(img) -> np.ndarray:
    """The assignment's ``image_utils.preprocess_image``: uint8 (H, W, 3) ->
    float32 normalised with the SqueezeNet statistics."""
    return ((np.asarray(img).astype(np.float32) / 255.0) - SQUEEZENET_MEAN) / SQUEEZENET_STD


def deprocess_image(img, rescale: bool = False) -> np.ndarray:
    """The assignment's ``image_utils.deprocess_image``: undo :func:`preprocess_image`
    (optionally min-max rescaled) and return uint8 (H, W, 3)."""
    img = np.asarray(img) * SQUEEZENET_STD + SQUEEZENET_MEAN
    if rescale:
        vmin, vmax = img.min(), img.max()
        img = (img - vmin) / (vmax - vmin)
    return np.clip(255 * img, 0.0, 255.0).astype(np.uint8)

