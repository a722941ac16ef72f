"""Minibatches of digit images for GAN training, with an order that depends only on
(seed, epoch), so a run interrupted mid-epoch resumes on exactly the same batches.

The images themselves come from :mod:`a3ext.datasets` (see :func:`load_digits`);
this module only batches tensors.

May import: ``a3ext.datasets``; outside a3ext: torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch

__all__ = ["BatchLoader", "as_unit_images", "load_digits", "DATA_ALIASES", "preprocess_img", "deprocess_img"]


def preprocess_img(x):
    """The notebook's ``preprocess_img``: [0, 1] images to the generator's [-1, 1]: ``2x - 1``."""
    return 2 * x - 1.0


def deprocess_img(x):
    """The notebook's ``deprocess_img``: [-1, 1] back to [0, 1]: ``(x + 1) / 2``."""
    return (x + 1.0) / 2.0


def as_unit_images(images, name: str = "images") -> torch.Tensor:
    """Return ``images`` as float32 ``(N, 1, 28, 28)`` in [0, 1].

    Accepts uint8 (0-255) or floating tensors / arrays of shape ``(N, 784)``,
    ``(N, 28, 28)`` or ``(N, 1, 28, 28)``; floating input must already be in [0, 1].
    """
    x = torch.as_tensor(images)
    if x.dim() == 2 and x.shape[1] == 784 or x.dim() == 3 and tuple(x.shape[1:]) == (28, 28) \
            or x.dim() == 4 and tuple(x.shape[1:]) == (1, 28, 28):
        pass
    else:
        raise ValueError(f"{name} must have shape (N, 784), (N, 28, 28) or (N, 1, 28, 28), "
                         f"got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        x = x.to(torch.float32)
        if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise ValueError(f"{name}: floating-point images must lie in [0, 1], got range "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]")
    else:
        raise TypeError(f"{name} must be uint8 or floating point, got dtype {x.dtype}")
    return x.reshape(x.shape[0], 1, 28, 28).contiguous()


class BatchLoader:
    """Iterate over ``(images, labels)`` minibatches; a drop-in for the assignment's
    ``DataLoader`` in :func:`a3ext.gan.run_a_gan`.

    Args:
        images: ``(N, 1, 28, 28)`` (or anything :func:`as_unit_images` accepts).
        labels: ``(N,)`` integer labels, or None (then batches carry ``-1`` labels).
        batch_size: images per batch.
        shuffle: permute the images every epoch with ``torch.randperm`` seeded by
            ``seed * 1_000_003 + epoch`` (independent of the global RNG).
        drop_last: drop the final short batch (the assignment skips it anyway).
        shard: ``(rank, world_size)``: keep every world_size-th batch starting at rank
            (data parallelism; every rank sees the same permutation).
        repeats: (keyword-only) passes over the images per epoch (each pass in its own
            order), e.g. to give the 5,000 embedded digits the notebook's 50,000-image epoch.

    Call :meth:`set_epoch` before iterating to choose the epoch's permutation.
    """

    def __init__(self, images, labels=None, batch_size: int = 128, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = True, shard: tuple[int, int] = (0, 1), *,
                 repeats: int = 1):
        self.images = as_unit_images(images)
        if isinstance(repeats, bool) or int(repeats) != repeats or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
        self.repeats = int(repeats)
        n = self.images.shape[0]
        if labels is None:
            self.labels = torch.full((n,), -1, dtype=torch.long)
        else:
            self.labels = torch.as_tensor(labels).to(torch.long).reshape(-1)
            if self.labels.shape[0] != n:
                raise ValueError(f"labels must have one entry per image ({n}), got {self.labels.shape[0]}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        rank, world = shard
        if not (0 <= rank < world):
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard!r}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.shard = (int(rank), int(world))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _num_batches_total(self) -> int:
        n = self.images.shape[0] * self.repeats
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        rank, world = self.shard
        total = self._num_batches_total()
        return len(range(rank, total, world))

    def order(self) -> torch.Tensor:
        """This epoch's permutation of the image indices."""
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n).repeat(self.repeats)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.cat([torch.randperm(n, generator=g) for _ in range(self.repeats)])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.order()
        rank, world = self.shard
        for b in range(rank, self._num_batches_total(), world):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield self.images[sel], self.labels[sel]


#: ``--data`` aliases -> :func:`a3ext.datasets.load` names.
DATA_ALIASES = {"mnist5k": "mnist_5k", "mnist_5k": "mnist_5k", "fashion": "fashion_mnist",
                "fashion_mnist": "fashion_mnist"}


def load_digits(data: str = "mnist5k", seed: int = 0):
    """Real 28x28 images with labels as :class:`a3ext.datasets.Splits` (train/val/test).

    ``data``: ``mnist5k`` (5,000 real MNIST digits, the default; the deterministic
    stratified 80/10/10 split of :func:`a3ext.datasets.split` with ``seed``: 4,000 /
    500 / 500), ``fashion`` (Fashion-MNIST: the official 60k training set split
    55k / 5k into train / val by class, the official 10k test set as test), or a
    directory of IDX files (its ``train`` files split like Fashion-MNIST's and its
    ``t10k`` files as test when present, else an 80/10/10 split of ``train``).
    """
    from .. import datasets as ds

    name = DATA_ALIASES.get(data, data)
    if name == "mnist_5k":
        splits = ds.split(ds.mnist_5k(), (0.8, 0.1, 0.1), seed=seed)
    elif name == "fashion_mnist":
        parts = ds.split(ds.fashion_mnist("train"), (11 / 12, 1 / 12, 0.0), seed=seed)
        splits = ds.Splits(parts.train, parts.val, ds.fashion_mnist("test"))
    elif Path(name).is_dir():
        train = ds.idx_dataset(name, "train")
        try:
            test = ds.idx_dataset(name, "test")
        except FileNotFoundError:
            splits = ds.split(train, (0.8, 0.1, 0.1), seed=seed)
        else:
            parts = ds.split(train, (11 / 12, 1 / 12, 0.0), seed=seed)
            splits = ds.Splits(parts.train, parts.val, test)
    else:
        raise ValueError(f"unknown data {data!r}: expected mnist5k, fashion or a directory of IDX files")
    shape = tuple(splits.train.images.shape[1:])
    if shape != (28, 28):
        raise ValueError(f"data {data!r}: the GANs need 28x28 images, got {shape[0]}x{shape[1]}")
    return splits
