"""COCO captioning data in the assignment's file layout, and a resumable, checksum-
verified downloader.

Layout of ``base_dir`` (exactly the assignment's ``coco_captioning`` folder):

* ``coco2014_captions.h5``: ``train_captions`` (N_train, T) integers (T = 17 for
  COCO), ``train_image_idxs`` (N_train,), ``val_captions`` (N_val, T),
  ``val_image_idxs`` (N_val,), image indices into the feature rows;
* ``train2014_vgg16_fc7_pca.h5`` / ``val2014_vgg16_fc7_pca.h5``: ``features``
  (num_images, 512); without PCA ``train2014_vgg16_fc7.h5`` / ``val2014_vgg16_fc7.h5``
  (4096-d for COCO);
* ``coco2014_vocab.json``: ``idx_to_word`` (list) and ``word_to_idx`` (dict) with
  ``<NULL>`` = 0, ``<START>``, ``<END>``, ``<UNK>``;
* ``train2014_urls.txt`` / ``val2014_urls.txt``: one image URL per feature row.

May import: ``a3ext._util``, ``a3ext.assets``, ``a3ext.captioning.synthetic``; outside
a3ext: h5py, numpy.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._util import download

__all__ = [
    "load_coco_data", "default_data_dir", "ASSIGNMENT_BASE_DIR", "decode_captions", "sample_coco_minibatch", "DataFormatError",
    "CAPTION_FILE", "VOCAB_FILE", "feature_file", "url_file", "download", "download_coco_captioning",
    "COCO_CAPTIONING_URL",
]

CAPTION_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
COCO_CAPTIONING_URL = "http://cs231n.stanford.edu/coco_captioning.zip"
_SPECIAL_WORDS = ("<NULL>", "<START>", "<END>", "<UNK>")
#: Where the assignment keeps the COCO files (relative to the notebook's folder).
ASSIGNMENT_BASE_DIR = os.path.join("cs231n", "datasets", "coco_captioning")
EMBEDDED_DIR_NAME = "captioning_embedded"


def _has_coco_files(base: Path) -> bool:
    return (base / CAPTION_FILE).is_file() and (base / VOCAB_FILE).is_file()


def default_data_dir(make: bool = True, progress: bool = True) -> Path:
    """The folder :func:`load_coco_data` reads when no ``base_dir`` is given: the first
    of ``$A3EXT_COCO_DIR``, the assignment's ``cs231n/datasets/coco_captioning`` (from
    the current directory) and ``<a3ext cache>/coco_captioning`` that holds the COCO
    files; else the embedded dataset in ``<a3ext cache>/captioning_embedded``, generated
    on first use (``make``; about a minute, with a progress bar) and then reused. The
    cache is ``$A3EXT_HOME`` or ``~/.cache/a3ext`` (:func:`a3ext.assets.cache_dir`)."""
    from ..assets import cache_dir

    env = os.environ.get("A3EXT_COCO_DIR")
    if env:
        if not _has_coco_files(Path(env)):
            raise FileNotFoundError(f"load_coco_data: A3EXT_COCO_DIR={env} does not hold the COCO captioning files "
                                    f"({CAPTION_FILE}, {VOCAB_FILE}, ...)")
        return Path(env)
    for cand in (Path(ASSIGNMENT_BASE_DIR), cache_dir() / "coco_captioning"):
        if _has_coco_files(cand):
            return cand
    embedded = cache_dir() / EMBEDDED_DIR_NAME
    if _has_coco_files(embedded) or not make:
        return embedded
    import shutil
    import sys
    import tempfile

    from .synthetic import make_dataset

    embedded.parent.mkdir(parents=True, exist_ok=True)
    print(f"load_coco_data: no COCO files found; generating the embedded captioning dataset in {embedded} "
          f"(once)", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=EMBEDDED_DIR_NAME + ".tmp-", dir=embedded.parent))
    try:
        make_dataset(tmp, progress=progress)
        try:
            os.replace(tmp, embedded)  # atomic: a reader sees the whole dataset or none
        except OSError:
            if not _has_coco_files(embedded):  # not made by a concurrent process meanwhile
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return embedded


class DataFormatError(ValueError):
    """A captioning data file is malformed (names the file, the key, expected and actual)."""


def feature_file(split: str, pca_features: bool = True) -> str:
    """File name of a split's image features, e.g. ``train2014_vgg16_fc7_pca.h5``."""
    return f"{split}2014_vgg16_fc7{'_pca' if pca_features else ''}.h5"


def url_file(split: str) -> str:
    return f"{split}2014_urls.txt"


def _require(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"load_coco_data: missing file {path} (expected the assignment's coco_captioning layout: "
            f"{CAPTION_FILE}, train2014_vgg16_fc7_pca.h5, val2014_vgg16_fc7_pca.h5, {VOCAB_FILE}, "
            f"train2014_urls.txt, val2014_urls.txt)"
        )
    return path


def _read_h5(path: Path, keys: Sequence[str]) -> dict:
    import h5py

    _require(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataFormatError(f"load_coco_data: {path} is not a readable HDF5 file: {exc}") from exc
    with f:
        out = {}
        for k in keys:
            if k not in f:
                raise DataFormatError(f"load_coco_data: {path} has no dataset {k!r} (it has {sorted(f.keys())})")
            out[k] = np.asarray(f[k])
        for k in f.keys():  # the assignment copies every dataset of the captions file
            if k not in out:
                out[k] = np.asarray(f[k])
        return out


def _check_array(path, key, arr, ndim, shape_str, integer=False):
    if arr.ndim != ndim:
        raise DataFormatError(
            f"load_coco_data: {path}:{key} must have shape {shape_str}, but has shape {list(arr.shape)}"
        )
    if integer and arr.dtype.kind not in "iu":
        raise DataFormatError(f"load_coco_data: {path}:{key} must hold integers, but has dtype {arr.dtype}")
    if not integer and arr.dtype.kind not in "fiu":
        raise DataFormatError(f"load_coco_data: {path}:{key} must be numeric, but has dtype {arr.dtype}")


def load_coco_data(base_dir=None, max_train: int | None = None, pca_features: bool = True, *,
                   rng: np.random.RandomState | None = None) -> dict:
    """Load the captioning data of ``base_dir`` into the assignment's dict.

    Without ``base_dir``: the COCO files where the assignment keeps them, else the
    embedded dataset (made on first use and cached; see :func:`default_data_dir`).

    Keys: ``train_captions``, ``train_image_idxs``, ``val_captions``,
    ``val_image_idxs`` (and any other dataset of the captions file),
    ``train_features``, ``val_features``, ``idx_to_word``, ``word_to_idx``,
    ``train_urls``, ``val_urls``. ``max_train``: keep that many training captions
    drawn with replacement by ``np.random.randint`` as the assignment does (or by
    ``rng`` when given). Raises ``FileNotFoundError`` for a missing file and
    :class:`DataFormatError` naming the file, key and shape for a malformed one.
    """
    base = default_data_dir() if base_dir is None else Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"load_coco_data: base_dir {base} is not a directory")
    cap_path = base / CAPTION_FILE
    data = _read_h5(cap_path, ["train_captions", "train_image_idxs", "val_captions", "val_image_idxs"])
    for split in ("train", "val"):
        caps, idxs = data[f"{split}_captions"], data[f"{split}_image_idxs"]
        _check_array(cap_path, f"{split}_captions", caps, 2, "(N, T)", integer=True)
        _check_array(cap_path, f"{split}_image_idxs", idxs, 1, f"(N,) with N = {caps.shape[0]}", integer=True)
        if idxs.shape[0] != caps.shape[0]:
            raise DataFormatError(
                f"load_coco_data: {cap_path}:{split}_image_idxs must have shape (N,) with N = "
                f"{caps.shape[0]} (rows of {split}_captions), but has shape {list(idxs.shape)}"
            )
    if data["train_captions"].shape[1] != data["val_captions"].shape[1]:
        raise DataFormatError(
            f"load_coco_data: {cap_path}: train_captions and val_captions must have the same length T, "
            f"but have shapes {list(data['train_captions'].shape)} and {list(data['val_captions'].shape)}"
        )

    for split in ("train", "val"):
        fpath = base / feature_file(split, pca_features)
        feats = _read_h5(fpath, ["features"])["features"]
        _check_array(fpath, "features", feats, 2, "(num_images, D)")
        idxs = data[f"{split}_image_idxs"]
        if idxs.size and (idxs.min() < 0 or idxs.max() >= feats.shape[0]):
            raise DataFormatError(
                f"load_coco_data: {cap_path}:{split}_image_idxs must index the rows of {fpath}:features "
                f"(0..{feats.shape[0] - 1}), but range over {int(idxs.min())}..{int(idxs.max())}"
            )
        data[f"{split}_features"] = feats
    if data["train_features"].shape[1] != data["val_features"].shape[1]:
        raise DataFormatError(
            f"load_coco_data: train and val features must have the same width D, but have shapes "
            f"{list(data['train_features'].shape)} and {list(data['val_features'].shape)}"
        )

    vpath = _require(base / VOCAB_FILE)
    try:
        vocab = json.loads(vpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"load_coco_data: {vpath} is not valid JSON: {exc}") from exc
    for key in ("idx_to_word", "word_to_idx"):
        if key not in vocab:
            raise DataFormatError(f"load_coco_data: {vpath} has no key {key!r} (it has {sorted(vocab)})")
    i2w, w2i = vocab["idx_to_word"], vocab["word_to_idx"]
    if not isinstance(i2w, list) or not isinstance(w2i, dict) or len(i2w) != len(w2i):
        raise DataFormatError(
            f"load_coco_data: {vpath}: idx_to_word must be a list and word_to_idx a dict of the same "
            f"length, but got {type(i2w).__name__} of {len(i2w)} and {type(w2i).__name__} of {len(w2i)}"
        )
    for w in _SPECIAL_WORDS:
        if w not in w2i:
            raise DataFormatError(f"load_coco_data: {vpath}:word_to_idx has no {w!r}")
    if w2i["<NULL>"] != 0:
        raise DataFormatError(f"load_coco_data: {vpath}:word_to_idx['<NULL>'] must be 0, but is {w2i['<NULL>']}")
    for split in ("train", "val"):
        caps = data[f"{split}_captions"]
        if caps.size and (caps.min() < 0 or caps.max() >= len(i2w)):
            raise DataFormatError(
                f"load_coco_data: {cap_path}:{split}_captions must hold word indices in [0, {len(i2w)}) "
                f"(the vocabulary of {vpath}), but range over {int(caps.min())}..{int(caps.max())}"
            )
    for k, v in vocab.items():
        data[k] = v

    for split in ("train", "val"):
        upath = _require(base / url_file(split))
        urls = np.asarray([line.strip() for line in upath.read_text().splitlines()])
        n_img = data[f"{split}_features"].shape[0]
        if urls.shape[0] != n_img:
            raise DataFormatError(
                f"load_coco_data: {upath} must have one line per feature row ({n_img}), but has {urls.shape[0]}"
            )
        data[f"{split}_urls"] = urls

    if max_train is not None:
        num_train = data["train_captions"].shape[0]
        mask = (rng or np.random).randint(num_train, size=max_train)
        data["train_captions"] = data["train_captions"][mask]
        data["train_image_idxs"] = data["train_image_idxs"][mask]
    return data


def decode_captions(captions, idx_to_word):
    """Integer captions to strings as the assignment does: (N, T) -> list of N strings,
    (T,) -> one string; ``<NULL>`` is dropped, decoding stops after ``<END>``
    (``<START>`` and ``<END>`` are kept)."""
    captions = np.asarray(captions)
    singleton = captions.ndim == 1
    if singleton:
        captions = captions[None]
    if captions.ndim != 2:
        raise ValueError(f"decode_captions: expected captions of shape (N, T) or (T,), but got {list(captions.shape)}")
    decoded = []
    for row in captions:
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word != "<NULL>":
                words.append(word)
            if word == "<END>":
                break
        decoded.append(" ".join(words))
    return decoded[0] if singleton else decoded


def sample_coco_minibatch(data: Mapping, batch_size: int = 100, split: str = "train",
                          rng: np.random.RandomState | None = None):
    """A random minibatch ``(captions, image_features, urls)`` of ``split``, drawn with
    replacement by ``np.random.choice`` as the assignment does (or by ``rng``)."""
    key = f"{split}_captions"
    if key not in data:
        raise KeyError(f"sample_coco_minibatch: data has no {key!r} (split {split!r}); keys: {sorted(data)}")
    split_size = data[key].shape[0]
    mask = (rng or np.random).choice(split_size, batch_size)
    captions = data[key][mask]
    image_idxs = data[f"{split}_image_idxs"][mask]
    image_features = data[f"{split}_features"][image_idxs]
    urls = data[f"{split}_urls"][image_idxs]
    return captions, image_features, urls


# ---------------------------------------------------------------------------
# Downloader (the resumable, verified `download` lives in a3ext._util and is re-exported here)
def download_coco_captioning(base_dir, url: str = COCO_CAPTIONING_URL, sha256: str | None = None) -> Path:
    """Download the assignment's ``coco_captioning.zip`` (resumable, verified when
    ``sha256`` is given) and extract it so that ``base_dir`` holds the files
    :func:`load_coco_data` reads. Returns ``base_dir``."""
    base = Path(base_dir)
    zpath = download(url, base.parent / (base.name + ".zip"), sha256=sha256)
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        prefix = os.path.commonprefix(names) if names else ""
        prefix = prefix[: prefix.rfind("/") + 1]
        base.mkdir(parents=True, exist_ok=True)
        for info in z.infolist():
            rel = info.filename[len(prefix):]
            if not rel or info.is_dir():
                continue
            target = (base / rel).resolve()
            if base.resolve() not in target.parents:
                raise ValueError(f"download_coco_captioning: unsafe path {info.filename!r} in {zpath}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
    return base
