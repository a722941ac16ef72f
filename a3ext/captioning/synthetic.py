"""The embedded captioning task: synthetic scenes rendered with Pillow, captioned by a
small grammar, written in the assignment's COCO file layout.

A scene holds one to three objects, each with a shape (circle, square, triangle,
diamond), a colour (red, green, blue, yellow, purple), a size (small, large) and a
horizontal slot (left, middle, right; objects are listed left to right). Every image
gets one caption per template of its object count (three paraphrases), e.g.
``a small red circle on the left`` / ``there is a small red circle on the left`` /
``on the left there is a small red circle``.
The (size, colour, shape) triples in ``HELD_OUT`` never occur in the training split
(each of their attribute pairs does); by default half of the validation images
contain at least one of them (compositional generalisation), the other half are new
scenes of the training distribution; ``val_image_heldout`` in the captions file says
which.

Image features: the pretrained EfficientNet-Lite0 of :mod:`a3ext.models` at 96 px
(the 1280-d globally pooled head features, the last block's map pooled over a 3x3
grid, so that positions and left-to-right order are recoverable, and the stride-16
block 8 (80 channels) pooled over the same grid, which keeps the colour and size that
the deepest features blur: val BLEU-4 0.81 -> 0.92 at equal training) or, with
``features='pixels'`` (or when the weights are unavailable and ``features='auto'``),
the image downsampled to 16x16x3; then PCA to ``pca_dim`` (fitted on the training
features), like the assignment's PCA'd VGG features. Everything is deterministic from ``seed``.

May import: numpy, Pillow, h5py, tqdm, torch, :mod:`a3ext.models` (the feature extractor) and
:mod:`.data` (the COCO file names); nothing above the captioning part.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data import CAPTION_FILE, VOCAB_FILE, feature_file, url_file

__all__ = [
    "SHAPES", "COLOURS", "SIZES", "SLOTS", "HELD_OUT", "Obj", "sample_scene", "render_scene",
    "scene_captions", "build_vocab", "make_dataset", "ImageFeaturizer", "META_FILE",
]

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220),
           "yellow": (235, 210, 40), "purple": (150, 60, 190)}
SIZES = ("small", "large")
SLOTS = ("left", "middle", "right")
# (size, colour, shape) triples never seen in training; each of their pairs is seen
HELD_OUT = (("large", "red", "triangle"), ("small", "green", "circle"), ("large", "blue", "diamond"),
            ("small", "yellow", "square"), ("large", "purple", "circle"))
WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
TEMPLATES = {
    1: ("a {0} {w0}", "there is a {0} {w0}", "{w0} there is a {0}"),
    2: ("a {0} and a {1}", "a {0} to the left of a {1}", "there is a {0} next to a {1}"),
    3: ("a {0} , a {1} and a {2}", "a {0} then a {1} then a {2}", "a {0} next to a {1} and a {2}"),
}
MAX_WORDS = 15  # + <START> and <END> = 17 columns, as COCO's captions
META_FILE = "synthetic_meta.json"
PCA_FILE = "synthetic_pca.npz"
CANVAS = 128


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    slot: str
    dy: float  # vertical offset in [-1, 1]
    dx: float  # horizontal jitter in [-1, 1]

    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


def _triples(split: str) -> list[tuple[str, str, str]]:
    every = [(z, c, s) for z in SIZES for c in COLOURS for s in SHAPES]
    if split == "train":
        return [p for p in every if p not in HELD_OUT]
    return every


def sample_scene(rng: np.random.RandomState, split: str = "train") -> list[Obj]:
    """One scene: 1-3 objects in distinct slots, listed left to right. In ``'val'``
    (``'heldout'``) at least one object is a held-out (size, colour, shape) triple; in
    ``'train'`` none."""
    if split == "heldout":
        split = "val"
    n = int(rng.randint(1, 4))
    slots = sorted(rng.choice(3, size=n, replace=False).tolist())
    triples = _triples(split)
    while True:
        chosen = [triples[int(rng.randint(len(triples)))] for _ in range(n)]
        if split == "train" or any(p in HELD_OUT for p in chosen):
            break
    return [Obj(shape=s, colour=c, size=z, slot=SLOTS[k],
                dy=float(rng.uniform(-1, 1)), dx=float(rng.uniform(-1, 1)))
            for (z, c, s), k in zip(chosen, slots)]


def render_scene(objs: Sequence[Obj], size: int = CANVAS):
    """The scene as an RGB PIL image of ``size`` x ``size`` pixels."""
    from PIL import Image, ImageDraw

    s = CANVAS
    img = Image.new("RGB", (s, s), (235, 235, 230))
    d = ImageDraw.Draw(img)
    for o in objs:
        r = 12 if o.size == "small" else 20
        cx = (SLOTS.index(o.slot) + 0.5) * s / 3 + o.dx * 2
        cy = s / 2 + o.dy * (s / 2 - r - 6)
        col = COLOURS[o.colour]
        if o.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        elif o.shape == "square":
            q = r * 0.85
            d.rectangle([cx - q, cy - q, cx + q, cy + q], fill=col)
        elif o.shape == "triangle":
            d.polygon([(cx, cy - r), (cx - r * 1.05, cy + r * 0.8), (cx + r * 1.05, cy + r * 0.8)], fill=col)
        else:
            d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=col)
    if size != s:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return img


def scene_captions(objs: Sequence[Obj]) -> list[str]:
    """All paraphrased captions of a scene (one per template)."""
    phrases = [o.phrase() for o in objs]
    w0 = WHERE[objs[0].slot]
    return [t.format(*phrases, w0=w0) for t in TEMPLATES[len(objs)]]


def build_vocab() -> tuple[list[str], dict[str, int]]:
    """``idx_to_word`` and ``word_to_idx`` with <NULL>=0, <START>=1, <END>=2, <UNK>=3."""
    words = set()
    for n, temps in TEMPLATES.items():
        for t in temps:
            words.update(w for w in t.format(*(["x"] * n), w0="").split() if w != "x")
    for w in WHERE.values():
        words.update(w.split())
    words.update(SHAPES)
    words.update(COLOURS)
    words.update(SIZES)
    idx_to_word = ["<NULL>", "<START>", "<END>", "<UNK>"] + sorted(words)
    return idx_to_word, {w: i for i, w in enumerate(idx_to_word)}


def encode_caption(text: str, word_to_idx: dict, length: int = MAX_WORDS + 2) -> np.ndarray:
    words = text.split()
    if len(words) > length - 2:
        raise ValueError(f"encode_caption: {len(words)} words do not fit in {length - 2}: {text!r}")
    ids = [word_to_idx["<START>"]] + [word_to_idx.get(w, word_to_idx["<UNK>"]) for w in words] + [word_to_idx["<END>"]]
    out = np.zeros(length, dtype=np.int32)
    out[: len(ids)] = ids
    return out


class ImageFeaturizer:
    """PIL images -> raw feature vectors. ``kind='efficientnet'``: EfficientNet-Lite0 at
    ``image_size`` pixels, the globally pooled 1280-d head features followed by the last
    block's 320-channel map average-pooled over a 3x3 grid (2880-d; at 96 px the map is
    3x3 at 1/32 resolution, one column per horizontal slot) -- global pooling alone throws
    away where objects are, and the captions list objects left to right -- and block 8's
    80-channel stride-16 map pooled over the same grid (720-d): mid-level features keep
    colour and size apart from shape, which the last block mixes (without them most val
    errors were colours, worst on held-out combinations). ``kind='pixels'``:
    16x16x3 pixels in [0, 1]. ``kind='auto'`` picks EfficientNet when its weights load.
    :attr:`blocks` names the parts of the vector and their sizes (make_dataset scales each
    part to the first part's total variance before the PCA)."""

    GRID = 3
    MID_BLOCK, MID_CHANNELS = 8, 80  # extract_features index of the mid-level map

    def __init__(self, kind: str = "auto", image_size: int = 96):
        if kind not in ("auto", "efficientnet", "pixels"):
            raise ValueError(f"ImageFeaturizer: kind must be 'auto', 'efficientnet' or 'pixels', but got {kind!r}")
        self.image_size = image_size
        self.model = None
        if kind in ("auto", "efficientnet"):
            try:
                from ..models import efficientnet_lite0

                self.model = efficientnet_lite0(pretrained=True)
                kind = "efficientnet"
            except Exception:
                if kind == "efficientnet":
                    raise
                kind = "pixels"
        self.kind = kind

    @property
    def dim(self) -> int:
        return sum(d for _, d in self.blocks)

    @property
    def blocks(self) -> list[tuple[str, int]]:
        if self.kind == "efficientnet":
            g = self.GRID
            return [("global1280", 1280), (f"grid{g}x{g}_320", 320 * g * g),
                    (f"block{self.MID_BLOCK}_grid{g}x{g}_{self.MID_CHANNELS}", self.MID_CHANNELS * g * g)]
        return [("pixels16", 16 * 16 * 3)]

    def __call__(self, images, batch_size: int = 64, on_batch=None) -> np.ndarray:
        import torch
        import torch.nn.functional as F
        from PIL import Image

        out = []
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size]
            if self.kind == "pixels":
                arr = np.stack([np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR),
                                           dtype=np.float32) / 255.0 for im in batch])
                out.append(arr.reshape(len(batch), -1))
                if on_batch is not None:
                    on_batch(len(batch))
                continue
            s = self.image_size
            arr = np.stack([np.asarray(im.convert("RGB").resize((s, s), Image.Resampling.BICUBIC),
                                       dtype=np.float32) / 255.0 for im in batch])
            x = torch.from_numpy(arr).permute(0, 3, 1, 2)
            m = self.model
            x = (x - m.pixel_mean) / m.pixel_std
            with torch.inference_mode():
                maps = m.extract_features(x)
                f = maps[-1]
                g = F.relu6(m._bn1(m._conv_head(f))).mean(dim=(2, 3))
                grid = F.adaptive_avg_pool2d(f, self.GRID).flatten(1)
                mid = F.adaptive_avg_pool2d(maps[self.MID_BLOCK], self.GRID).flatten(1)
            out.append(torch.cat([g, grid, mid], dim=1).numpy())
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.dim), np.float32)


def fit_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA (numpy eigendecomposition of the smaller of the Gram and covariance matrices,
    equal to the SVD's principal directions): returns ``(mean (D,), components (D, dim))``;
    project with ``(x - mean) @ components``."""
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    if dim > min(n, d):
        raise ValueError(f"fit_pca: pca_dim {dim} exceeds the rank bound min(N, D) = {min(n, d)}")
    # eigendecomposition of the smaller Gram / covariance matrix (much faster than a full
    # SVD of a wide N x D matrix); eigh returns ascending eigenvalues
    if n < d:
        w, u = np.linalg.eigh(xc @ xc.T)
        u = u[:, ::-1][:, :dim]
        comps = xc.T @ u
        comps /= np.maximum(np.linalg.norm(comps, axis=0, keepdims=True), 1e-12)
    else:
        w, v = np.linalg.eigh(xc.T @ xc)
        comps = v[:, ::-1][:, :dim]
    # deterministic signs: the largest-magnitude entry of each component is positive
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(dim)])
    return mean, comps * signs


def make_dataset(out_dir, num_train: int = 10000, num_val: int = 300, seed: int = 0,
                 features: str = "auto", image_size: int = 96, pca_dim: int = 512,
                 save_images: bool = True, val_heldout_fraction: float = 0.5, verbose: bool = False,
                 progress: bool = False) -> dict:
    """Generate the embedded dataset into ``out_dir`` in the COCO layout
    (:func:`a3ext.captioning.data.load_coco_data` reads it). Returns the metadata dict (also
    written to ``synthetic_meta.json``, with timings).

    A fraction ``val_heldout_fraction`` of the validation images contains at least one
    held-out (size, colour, shape) triple; the others are new scenes from the training
    distribution. The captions file also holds ``val_image_heldout`` (one 0/1 flag per
    validation image) so BLEU can be reported on both parts. ``progress``: a tqdm bar
    over the scenes (rendered, then featurized)."""
    import h5py

    for name, value in (("num_train", num_train), ("num_val", num_val), ("image_size", image_size),
                        ("pca_dim", pca_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"make_dataset: {name} must be a positive integer, but got {value!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rng = np.random.RandomState(seed)
    idx_to_word, word_to_idx = build_vocab()
    featurizer = ImageFeaturizer(features, image_size=image_size)
    raw, caps, idxs, urls, scenes = {}, {}, {}, {}, {}
    t_render = t_feat = 0.0
    if not 0.0 <= val_heldout_fraction <= 1.0:
        raise ValueError(f"make_dataset: val_heldout_fraction must be in [0, 1], but got {val_heldout_fraction}")
    n_held = int(round(num_val * val_heldout_fraction))
    heldout_flags = np.zeros(num_val, dtype=np.int8)
    heldout_flags[rng.permutation(num_val)[:n_held]] = 1
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=2 * (num_train + num_val), desc="embedded captioning data", unit="step", leave=False)
    for split, n in (("train", num_train), ("val", num_val)):
        ta = time.perf_counter()
        if split == "train":
            objs = [sample_scene(rng, "train") for _ in range(n)]
        else:
            objs = [sample_scene(rng, "heldout" if heldout_flags[i] else "train") for i in range(n)]
        images = []
        for o in objs:
            images.append(render_scene(o))
            if bar is not None:
                bar.update(1)
        rows, img_idx, names = [], [], []
        for i, (o, im) in enumerate(zip(objs, images)):
            for text in scene_captions(o):
                rows.append(encode_caption(text, word_to_idx))
                img_idx.append(i)
            name = f"images/{split}/{i:05d}.png"
            names.append(name)
            if save_images:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                im.save(out / name)
        tb = time.perf_counter()
        raw[split] = featurizer(images, on_batch=bar.update if bar is not None else None).astype(np.float32)
        t_feat += time.perf_counter() - tb
        t_render += tb - ta
        caps[split] = np.stack(rows) if rows else np.zeros((0, MAX_WORDS + 2), np.int32)
        idxs[split] = np.asarray(img_idx, dtype=np.int32)
        urls[split] = names
        scenes[split] = [[o.__dict__ for o in s] for s in objs]
        if verbose:
            print(f"{split}: {n} images, {len(rows)} captions")
    if bar is not None:
        bar.close()
    dim = min(pca_dim, raw["train"].shape[1], raw["train"].shape[0])
    if dim < pca_dim and verbose:
        print(f"pca_dim {pca_dim} lowered to {dim}: at most the feature width ({raw['train'].shape[1]}) and the "
              f"number of training images ({raw['train'].shape[0]})")
    # scale each block of the raw vector to the total variance of the first block (so the
    # 2880-d grid does not swamp the 1280-d global part, and the features keep the global
    # part's scale), folded into the PCA components: project with (x - mean) @ components
    scale = np.ones(raw["train"].shape[1])
    start, target_var = 0, None
    for _, d in featurizer.blocks:
        var = max(float(raw["train"][:, start:start + d].astype(np.float64).var(axis=0).sum()), 1e-12)
        target_var = var if target_var is None else target_var
        scale[start:start + d] = math.sqrt(target_var / var)
        start += d
    mean, comps = fit_pca(raw["train"].astype(np.float64) * scale, dim)
    mean, comps = mean / scale, comps * scale[:, None]
    with h5py.File(out / CAPTION_FILE, "w") as f:
        for split in ("train", "val"):
            f.create_dataset(f"{split}_captions", data=caps[split])
            f.create_dataset(f"{split}_image_idxs", data=idxs[split])
        f.create_dataset("val_image_heldout", data=heldout_flags)
    for split in ("train", "val"):
        pca = ((raw[split] - mean) @ comps).astype(np.float32)
        for pca_flag, arr in ((True, pca), (False, raw[split])):
            with h5py.File(out / feature_file(split, pca_flag), "w") as f:
                f.create_dataset("features", data=arr)
        (out / url_file(split)).write_text("\n".join(urls[split]) + "\n")
    (out / VOCAB_FILE).write_text(json.dumps({"idx_to_word": idx_to_word, "word_to_idx": word_to_idx}))
    np.savez(out / PCA_FILE, mean=mean, components=comps)
    (out / "synthetic_scenes.json").write_text(json.dumps(scenes))
    meta = {"generator": "a3ext.captioning.synthetic", "seed": seed, "num_train": num_train,
            "num_val": num_val, "features": featurizer.kind, "image_size": image_size,
            "raw_dim": int(raw["train"].shape[1]), "raw_blocks": featurizer.blocks, "pca_dim": int(dim),
            "held_out": [list(p) for p in HELD_OUT], "val_heldout_fraction": val_heldout_fraction,
            "seconds": {"render": round(t_render, 2), "features": round(t_feat, 2),
                        "total": round(time.perf_counter() - t0, 2)}}
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    if verbose:
        print(f"wrote {out}: features={featurizer.kind}, pca_dim={meta['pca_dim']}")
    return meta


def image_features(base_dir, images) -> np.ndarray:
    """PCA features of PIL images for a model trained on the embedded dataset in
    ``base_dir`` (same featurizer and PCA as at generation time)."""
    base = Path(base_dir)
    meta = json.loads((base / META_FILE).read_text())
    pca = np.load(base / PCA_FILE)
    featurizer = ImageFeaturizer(meta["features"], image_size=meta["image_size"])
    saved = [tuple(b) for b in meta.get("raw_blocks", [])]
    if saved != [tuple(b) for b in featurizer.blocks]:
        raise ValueError(
            f"image_features: the dataset in {str(base)!r} was generated with raw feature blocks {saved}, but this "
            f"version of a3ext computes {featurizer.blocks}; regenerate it with `a3ext caption make-dataset --out "
            f"{base}` (and retrain) to caption new images")
    feats = featurizer(list(images))
    return ((feats - pca["mean"]) @ pca["components"]).astype(np.float32)
