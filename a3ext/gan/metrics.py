"""Sample quality of generated digits, measured with a small classifier.

**This is this project's own metric.** Published FIDs use an Inception-v3 network
trained on ImageNet and 299x299 RGB inputs; here a small CNN (:class:`DigitClassifier`)
is trained once on the real *training* digits of the same data set, and its 128-d
penultimate activations play Inception's role. Numbers are therefore only comparable
with each other (same data set, same classifier seed, same sample count), never with
FIDs from papers.

For a batch of images :meth:`DigitQuality.score` reports

* ``confidence`` -- mean over images of the classifier's top softmax probability
  (recognisable digits score near the classifier's confidence on real digits);
* ``mean_entropy`` -- mean entropy of p(y|x) in nats (low = unambiguous);
* ``class_entropy`` -- entropy of the average p(y) in nats (ln 10 = 2.303 when
  every class is equally common; low means mode collapse);
* ``digit_score`` -- exp(class_entropy - mean_entropy) = exp(E_x KL(p(y|x) || p(y))),
  the Inception-score formula with this classifier (1 .. number of classes);
* ``frechet`` -- the Frechet distance between Gaussians fitted to the penultimate
  features of the images and of the real training digits.

The floor is the same score for *held-out* real digits (:meth:`DigitQuality.floor`):
a generator can not be expected to beat it. The Frechet distance is biased upwards
for small samples, so always compare equal sample counts (the default is 1,000).

May import: ``a3ext.assets``, ``a3ext.checkpoint``, ``a3ext.gan.data``; outside a3ext:
torch.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .data import as_unit_images

__all__ = [
    "DigitClassifier",
    "DigitQuality",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "quality_model",
]


def feature_statistics(features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of features ``(N, D)`` in float64."""
    x = torch.as_tensor(features).to(torch.float64)
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {tuple(x.shape)}")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.

    Computed in float64 without a general matrix square root: with
    ``S = sigma1^(1/2)`` (symmetric, from an eigendecomposition),
    ``tr((sigma1 sigma2)^(1/2)) = sum sqrt(eig(S sigma2 S))``, and ``S sigma2 S`` is
    symmetric positive semi-definite, so only ``eigh`` is needed. Tiny negative
    eigenvalues from round-off are clipped to 0.
    """
    mu1, mu2 = (torch.as_tensor(m).to(torch.float64).reshape(-1) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s).to(torch.float64) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {tuple(s.shape)}")
    if mu2.shape[0] != d:
        raise ValueError(f"mu1 and mu2 must have the same length, got {d} and {mu2.shape[0]}")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    w, v = torch.linalg.eigh(s1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T
    m = root1 @ s2 @ root1
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp(min=0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_sqrt)


def frechet_distance_from_features(features1, features2) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N1, D)``, ``(N2, D)``."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


class DigitClassifier(nn.Module):
    """Small CNN for 28x28 images in [-1, 1]: conv 3x3 32 -> ReLU -> maxpool ->
    conv 3x3 64 -> ReLU -> maxpool -> FC 3136 -> 128 -> ReLU (the features) ->
    dropout -> FC 128 -> num_classes."""

    FEATURES = 128

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.FEATURES), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``(N, 128)`` of images ``(N, 784)`` or ``(N, 1, 28, 28)``."""
        return self.body(x.reshape(-1, 1, 28, 28))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _signed(images) -> torch.Tensor:
    """Real digits in any :func:`as_unit_images` form -> (N, 1, 28, 28) in [-1, 1]."""
    return 2.0 * as_unit_images(images) - 1.0


def _is_quality_state(state: dict) -> bool:
    return state.get("format") == "a3ext.gan.quality/1"


def _quality_kind():
    from .. import checkpoint
    return checkpoint.Kind("gan-quality", "a3ext digit-quality model",
                           legacy_keys=frozenset({"format", "classifier", "train_mu", "train_sigma", "info"}),
                           is_legacy=_is_quality_state)


#: The quality model's files in :mod:`a3ext.checkpoint` (digest-verified).
QUALITY_KIND = _quality_kind()


class DigitQuality:
    """A trained :class:`DigitClassifier` plus the feature statistics of the real
    training digits; scores batches of images in [-1, 1] (generator output)."""

    def __init__(self, classifier: DigitClassifier, train_mu: torch.Tensor, train_sigma: torch.Tensor,
                 info: dict | None = None):
        self.classifier = classifier.eval()
        self.train_mu = train_mu.to(torch.float64)
        self.train_sigma = train_sigma.to(torch.float64)
        self.info = dict(info or {})

    # -- training ------------------------------------------------------------------
    @classmethod
    def fit(cls, images, labels, *, num_classes: int = 10, epochs: int = 8, batch_size: int = 64,
            lr: float = 1e-3, seed: int = 0, val_images=None, val_labels=None) -> "DigitQuality":
        """Train the classifier on real digits (uint8 or [0, 1]) with Adam and cross
        entropy, deterministic given ``seed``; record validation accuracy if given."""
        x = _signed(images)
        y = torch.as_tensor(labels).to(torch.long).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have one entry per image ({x.shape[0]}), got {y.shape[0]}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DigitClassifier(num_classes)
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            g = torch.Generator().manual_seed(seed)
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(x.shape[0], generator=g)
                for i in range(0, x.shape[0], batch_size):
                    idx = perm[i:i + batch_size]
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
        model.eval()
        with torch.no_grad():
            feats = torch.cat([model.features(x[i:i + 1000]) for i in range(0, x.shape[0], 1000)])
        mu, sigma = feature_statistics(feats)
        info = dict(num_classes=num_classes, epochs=epochs, seed=seed, train_size=int(x.shape[0]))
        quality = cls(model, mu, sigma, info)
        if val_images is not None:
            quality.info["val_accuracy"] = quality.accuracy(_signed(val_images), val_labels)
        return quality

    # -- persistence (weights_only-safe) ---------------------------------------------
    def state_dict(self) -> dict:
        return {"format": "a3ext.gan.quality/1", "classifier": self.classifier.state_dict(),
                "train_mu": self.train_mu, "train_sigma": self.train_sigma, "info": dict(self.info)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "DigitQuality":
        if state.get("format") != "a3ext.gan.quality/1":
            raise ValueError(f"not a DigitQuality state: format {state.get('format')!r}")
        model = DigitClassifier(int(state["info"].get("num_classes", 10)))
        model.load_state_dict(state["classifier"])
        return cls(model, state["train_mu"], state["train_sigma"], state["info"])

    def save(self, path) -> Path:
        """Atomic, digest-stamped (:mod:`a3ext.checkpoint`, kind ``gan-quality``)."""
        from .. import checkpoint
        return checkpoint.save(self.state_dict(), path, QUALITY_KIND)

    @classmethod
    def load(cls, path) -> "DigitQuality":
        """Verified load (``weights_only``, digest checked; files written before digests
        load with :class:`a3ext.checkpoint.UnverifiedCheckpointWarning`)."""
        from .. import checkpoint
        return cls.from_state_dict(checkpoint.load(path, QUALITY_KIND))

    # -- evaluation ----------------------------------------------------------------
    @torch.no_grad()
    def features_and_probs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, 128)`` and softmax probabilities ``(N, K)`` of images in [-1, 1]."""
        x = torch.as_tensor(images).to(torch.float32).reshape(-1, 1, 28, 28)
        feats, probs = [], []
        for i in range(0, x.shape[0], 1000):
            f = self.classifier.features(x[i:i + 1000])
            feats.append(f)
            probs.append(torch.softmax(self.classifier.head(f), dim=1))
        return torch.cat(feats), torch.cat(probs)

    def accuracy(self, images: torch.Tensor, labels) -> float:
        """Classification accuracy on images in [-1, 1]."""
        _, p = self.features_and_probs(images)
        y = torch.as_tensor(labels).to(torch.long).reshape(-1)
        return float((p.argmax(1) == y).to(torch.float64).mean())

    def score(self, images: torch.Tensor) -> dict:
        """Quality scores (see the module docstring) of images ``(N, 784)`` or
        ``(N, 1, 28, 28)`` with values in [-1, 1], N >= 2."""
        feats, p = self.features_and_probs(images)
        p = p.to(torch.float64)
        logp = torch.log(p.clamp(min=1e-12))
        mean_entropy = float(-(p * logp).sum(1).mean())
        marginal = p.mean(0)
        class_entropy = float(-(marginal * torch.log(marginal.clamp(min=1e-12))).sum())
        mu, sigma = feature_statistics(feats)
        return {
            "n": int(p.shape[0]),
            "confidence": float(p.max(1).values.mean()),
            "mean_entropy": mean_entropy,
            "class_entropy": class_entropy,
            "digit_score": math.exp(class_entropy - mean_entropy),
            "frechet": frechet_distance(mu, sigma, self.train_mu, self.train_sigma),
        }

    def floor(self, heldout_images) -> dict:
        """:meth:`score` of held-out *real* digits (uint8 or [0, 1]): the best a
        generator can be expected to reach with the same sample count."""
        return self.score(_signed(heldout_images))


def quality_model(data: str = "mnist5k", seed: int = 0, cache: bool | str | Path = True,
                  epochs: int = 8) -> tuple[DigitQuality, object]:
    """The quality classifier of a data set, trained once on its training split
    (:func:`a3ext.gan.load_digits` with ``seed``) and cached (``cache=True``: in
    ``a3ext.assets.cache_dir()/gan``; a path: that file; False: not cached).

    Returns ``(quality, splits)``; ``quality.info['val_accuracy']`` is the classifier's
    accuracy on the validation split.
    """
    from .data import DATA_ALIASES, load_digits

    splits = load_digits(data, seed=seed)
    path = None
    if cache is True:
        from ..assets import cache_dir
        tag = DATA_ALIASES.get(data, Path(str(data)).name)
        path = cache_dir() / "gan" / f"quality_{tag}_seed{seed}_e{epochs}.pt"
    elif cache:
        path = Path(cache)
    if path is not None and path.is_file():
        try:
            q = DigitQuality.load(path)
            if q.info.get("train_size") == len(splits.train):
                return q, splits
        except Exception:  # a stale or corrupt cache file is simply rebuilt
            pass
    q = DigitQuality.fit(splits.train.images, splits.train.labels, num_classes=len(splits.train.class_names),
                         epochs=epochs, seed=seed, val_images=splits.val.images, val_labels=splits.val.labels)
    if path is not None:
        q.save(path)
    return q, splits
