"""Tests of a3ext.datasets: the real digit sets (shapes, ranges, class balance),
deterministic stratified splits and the IDX reader on good and damaged files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from a3ext import datasets
from a3ext.datasets import DigitSet, IdxFormatError


@pytest.fixture(scope="module")
def mnist():
    return datasets.mnist_5k()


@pytest.fixture(scope="module")
def fashion_train():
    return datasets.fashion_mnist("train")


def assert_digit_set(d: DigitSet, n: int, side: int, per_class: int):
    assert d.images.shape == (n, side, side) and d.images.dtype == torch.uint8
    assert d.labels.shape == (n,) and d.labels.dtype == torch.int64
    assert int(d.images.min()) == 0 and int(d.images.max()) == 255
    assert torch.bincount(d.labels, minlength=10).tolist() == [per_class] * 10
    assert len(d) == n and len(d.class_names) == 10
    # digits and clothes are bright on a black background: the border is mostly 0
    border = torch.cat([d.images[:, 0], d.images[:, -1], d.images[:, :, 0], d.images[:, :, -1]], 1)
    assert float((border == 0).float().mean()) > 0.7


def test_mnist_5k(mnist):
    assert_digit_set(mnist, 5000, 28, 500)
    assert mnist.class_names == datasets.DIGIT_CLASSES
    assert torch.equal(mnist.labels, torch.arange(10).repeat_interleave(500))  # sorted by label
    assert 25 < float(mnist.images.float().mean()) < 40  # MNIST's mean grey level is about 33
    x = mnist.float_images()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_opencv_digits(mnist):
    d20 = datasets.opencv_digits()
    assert_digit_set(d20, 5000, 20, 500)
    d28 = datasets.opencv_digits(size=28)
    assert d28.images.shape == (5000, 28, 28) and torch.equal(d28.labels, d20.labels)
    # the same kind of digits as MNIST: class-mean images correlate best with the same MNIST class
    def class_means(d):
        return torch.stack([d.float_images()[d.labels == c].mean(0).flatten() for c in range(10)])
    a, b = class_means(d28), class_means(mnist)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    corr = (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    assert corr.argmax(dim=1).tolist() == list(range(10))


def test_fashion_mnist(fashion_train):
    assert_digit_set(fashion_train, 60000, 28, 6000)
    assert fashion_train.class_names[0] == "T-shirt/top" and fashion_train.class_names[9] == "Ankle boot"
    test = datasets.fashion_mnist("test")
    assert_digit_set(test, 10000, 28, 1000)
    with pytest.raises(ValueError, match="'valid'"):
        datasets.fashion_mnist("valid")


def test_load_dispatch(mnist, tmp_path):
    assert torch.equal(datasets.load("mnist_5k").labels, mnist.labels)
    assert datasets.load("opencv_digits", size=28).images.shape == (5000, 28, 28)
    write_idx_dir(tmp_path, n=6)
    assert len(datasets.load(str(tmp_path), split_name="test")) == 6
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        datasets.load("cifar")


# --------------------------------------------------------------------------- splits


def test_split_is_stratified_disjoint_and_deterministic(mnist):
    parts = datasets.split(mnist, (0.7, 0.2, 0.1), seed=3)
    assert [len(p) for p in (parts.train, parts.val, parts.test)] == [3500, 1000, 500]
    for p, per_class in ((parts.train, 350), (parts.val, 100), (parts.test, 50)):
        assert torch.bincount(p.labels, minlength=10).tolist() == [per_class] * 10
        assert p.class_names == mnist.class_names
    # disjoint and complete: every image appears exactly once (compare as byte strings)
    keys = [bytes(img.numpy()) for p in (parts.train, parts.val, parts.test) for img in p.images]
    assert sorted(keys) == sorted(bytes(img.numpy()) for img in mnist.images)

    again = datasets.split(mnist, (0.7, 0.2, 0.1), seed=3)
    assert torch.equal(again.val.images, parts.val.images) and torch.equal(again.train.labels, parts.train.labels)
    other = datasets.split(mnist, (0.7, 0.2, 0.1), seed=4)
    assert not torch.equal(other.val.images, parts.val.images)
    assert not torch.equal(parts.train.labels[:100], torch.sort(parts.train.labels[:100]).values)  # shuffled


def test_split_unstratified_and_bad_fractions(fashion_train):
    small = fashion_train.subset(torch.arange(1000))
    parts = datasets.split(small, (0.5, 0.25, 0.25), seed=0, stratify=False)
    assert [len(p) for p in (parts.train, parts.val, parts.test)] == [500, 250, 250]
    with pytest.raises(ValueError, match=r"summing to 1, got \(0.5, 0.5, 0.5\)"):
        datasets.split(small, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        datasets.split(small, (1.2, -0.1, -0.1))


def test_digit_set_validates_its_fields():
    with pytest.raises(ValueError, match="uint8"):
        DigitSet(torch.zeros(2, 4, 4), torch.zeros(2, dtype=torch.int64), ("a", "b"), "x")
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        DigitSet(torch.zeros(2, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ("a", "b"), "x")


# --------------------------------------------------------------------------- IDX files


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx_dir(directory, n=10, gz=False, prefix="t10k"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 5, 4), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_round_trip(tmp_path, gz):
    images, labels = write_idx_dir(tmp_path, n=12, gz=gz, prefix="train")
    d = datasets.idx_dataset(tmp_path, "train")
    assert d.images.shape == (12, 5, 4) and np.array_equal(d.images.numpy(), images)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == labels.tolist()
    assert d.class_names == datasets.DIGIT_CLASSES
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        datasets.idx_dataset(tmp_path, "test")


def test_read_idx_other_types(tmp_path):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    (tmp_path / "i32").write_bytes(idx_bytes(values, 0x0C))
    out = datasets.read_idx(tmp_path / "i32")
    assert out.dtype == np.int32 and np.array_equal(out, values)
    floats = np.array([0.5, -1.25], dtype=np.float64)
    (tmp_path / "f64").write_bytes(idx_bytes(floats, 0x0E))
    assert np.array_equal(datasets.read_idx(tmp_path / "f64"), floats)


def test_idx_errors(tmp_path):
    good = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    cases = {
        "magic": (b"\x08\x03" + good[2:], "not an IDX file: magic bytes 0803"),
        "type": (good[:2] + b"\x07" + good[3:], "not an IDX file"),
        "truncated": (good[:-1], r"shape \(3, 2, 2\).*has 27 bytes \(truncated\)"),
        "trailing": (good + b"\x00", r"28 bytes in all.*has 29 bytes \(trailing data\)"),
        "empty": (b"", r"magic bytes \(empty\)"),
        "header": (good[:9], "header of a 3-d IDX file needs 16 bytes"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IdxFormatError, match=message):
            datasets.read_idx(tmp_path / name)
    (tmp_path / "damaged.gz").write_bytes(gzip.compress(good)[:-6])
    with pytest.raises(IdxFormatError, match="damaged gzip stream"):
        datasets.read_idx(tmp_path / "damaged.gz")


def test_idx_pair_mismatches(tmp_path):
    write_idx_dir(tmp_path, n=4)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)))
    with pytest.raises(IdxFormatError, match="has 4 images but .* has 5 labels"):
        datasets.idx_dataset(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1, 2, 10], np.uint8)))
    with pytest.raises(IdxFormatError, match="label 10 out of range for 10 classes"):
        datasets.idx_dataset(tmp_path, "test")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((4, 1), np.uint8)))
    with pytest.raises(IdxFormatError, match=r"expected uint8 labels of shape \(N,\)"):
        datasets.idx_dataset(tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((4, 9), np.uint8)))
    with pytest.raises(IdxFormatError, match=r"expected uint8 images of shape \(N, H, W\)"):
        datasets.idx_dataset(tmp_path, "test")
