"""Semi-supervised classification with a GAN (Salimans et al. 2016, "Improved
Techniques for Training GANs", section 5).

The discriminator is a K-class classifier whose logits l_1..l_K also define the
probability that an image is real: with the logit of the extra "fake" class fixed
at 0, p(fake | x) = 1 / (Z(x) + 1) with Z(x) = sum_k exp(l_k(x)), i.e.
D(x) = Z / (Z + 1) = sigmoid(logsumexp(l)). Its loss is

* supervised: cross entropy of the K logits on the labeled subset;
* unsupervised: ``-mean(log D(x_unlabeled)) - mean(log(1 - D(G(z))))``, weighted 0.5
  as in the authors' code: ``0.5 * mean(softplus(lse_u) - lse_u) + 0.5 * mean(softplus(lse_g))``.

The generator is trained with *feature matching*: it minimises the squared
distance between the mean last-hidden-layer features of real and generated
batches. The networks follow the authors' MNIST model (pixels in [0, 1];
D: Gaussian input noise 0.3, dense 1000-500-250-250-250 ReLU layers each followed by
Gaussian noise 0.5, dense K, weight normalisation; G: uniform noise 100 -> 500 -> 500
softplus with batch norm -> 784 sigmoid).

The supervised-only baseline is the *same* network trained with the supervised loss
alone on the *same* labeled subset for the same number of steps.

May import: ``a3ext.gan.data``, ``a3ext.gan.models``, ``a3ext.gan.train``; outside a3ext: torch, tqdm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from .data import as_unit_images
from .models import get_optimizer

__all__ = [
    "GaussianNoise",
    "SemiSupervisedDiscriminator",
    "FeatureMatchingGenerator",
    "select_labeled",
    "supervised_loss",
    "unsupervised_loss",
    "feature_matching_loss",
    "SemiSupervisedResult",
    "train_semi_supervised",
    "train_supervised_baseline",
    "accuracy",
    "run_semi_supervised",
]


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2) noise in training mode; identity in eval mode."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def _dense(n_in: int, n_out: int) -> nn.Module:
    return weight_norm(nn.Linear(n_in, n_out))


class SemiSupervisedDiscriminator(nn.Module):
    """K-way classifier / discriminator for images ``(N, 784)`` in [0, 1].

    ``forward`` returns logits ``(N, K)``; :meth:`features_and_logits` also returns
    the last hidden layer ``(N, 250)`` used for feature matching.
    """

    def __init__(self, num_classes: int = 10, hidden=(1000, 500, 250, 250, 250),
                 input_noise: float = 0.3, hidden_noise: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = [GaussianNoise(input_noise)]
        n_in = 784
        for i, h in enumerate(hidden):
            layers += [_dense(n_in, h), nn.ReLU()]
            n_in = h
            if i < len(hidden) - 1:
                layers.append(GaussianNoise(hidden_noise))
        self.body = nn.Sequential(*layers)
        self.noise_out = GaussianNoise(hidden_noise)
        self.head = _dense(n_in, num_classes)
        self.num_classes = num_classes

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x.reshape(x.shape[0], -1))
        return f, self.head(self.noise_out(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


class FeatureMatchingGenerator(nn.Module):
    """Uniform noise ``(N, noise_dim)`` -> images ``(N, 784)`` in (0, 1):
    dense 500 -> softplus -> BN -> dense 500 -> softplus -> BN -> dense 784 (weight
    norm) -> sigmoid."""

    def __init__(self, noise_dim: int = 100):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(
            nn.Linear(noise_dim, 500), nn.Softplus(), nn.BatchNorm1d(500),
            nn.Linear(500, 500), nn.Softplus(), nn.BatchNorm1d(500),
            _dense(500, 784), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def select_labeled(labels, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class (a seeded random choice),
    sorted. Raises if a class has fewer examples than requested."""
    y = torch.as_tensor(labels).to(torch.long).reshape(-1)
    if int(per_class) != per_class or per_class < 1:
        raise ValueError(f"labels_per_class must be an integer >= 1, got {per_class!r}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if idx.numel() < per_class:
            raise ValueError(f"labels_per_class={per_class}, but class {c} has only {idx.numel()} examples")
        chosen.append(idx[torch.randperm(idx.numel(), generator=g)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy of the K real-class logits ``(N, K)`` against ``labels (N,)``."""
    return F.cross_entropy(logits, labels)


def unsupervised_loss(logits_unlabeled: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``0.5 * mean(-log D(x)) + 0.5 * mean(-log(1 - D(G(z))))`` with
    ``D = sigmoid(logsumexp(logits))`` (the fake class's logit fixed at 0)."""
    lse_u = torch.logsumexp(logits_unlabeled, dim=1)
    lse_g = torch.logsumexp(logits_fake, dim=1)
    return 0.5 * (F.softplus(lse_u) - lse_u).mean() + 0.5 * F.softplus(lse_g).mean()


def feature_matching_loss(features_real: torch.Tensor, features_fake: torch.Tensor) -> torch.Tensor:
    """``mean_j (mean_i f_real[i, j] - mean_i f_fake[i, j])^2``."""
    return ((features_real.mean(0) - features_fake.mean(0)) ** 2).mean()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels) -> float:
    """Accuracy of ``model`` (eval mode; mode restored) on images ``(N, 784)`` in [0, 1]."""
    was = model.training
    model.eval()
    try:
        y = torch.as_tensor(labels).to(torch.long).reshape(-1)
        pred = torch.cat([model(images[i:i + 1000]).argmax(1) for i in range(0, images.shape[0], 1000)])
        return float((pred == y).to(torch.float64).mean())
    finally:
        model.train(was)


@dataclass
class SemiSupervisedResult:
    """Outcome of :func:`run_semi_supervised`. Accuracies are fractions in [0, 1]."""

    gan_accuracy: float
    baseline_accuracy: float
    labels_per_class: int
    num_labeled: int
    num_unlabeled: int
    num_test: int
    epochs: int
    seed: int
    discriminator: nn.Module | None = None
    baseline: nn.Module | None = None
    generator: nn.Module | None = None
    history: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.labels_per_class} labels/class ({self.num_labeled} labeled, {self.num_unlabeled} "
                f"unlabeled), {self.epochs} epochs, seed {self.seed}: semi-supervised GAN test accuracy "
                f"{100 * self.gan_accuracy:.2f}% vs supervised-only baseline "
                f"{100 * self.baseline_accuracy:.2f}% on {self.num_test} test images "
                f"({100 * (self.gan_accuracy - self.baseline_accuracy):+.2f} points)")


def _lr_at(lr: float, step: int, total: int, decay_start: float) -> float:
    """Constant, then linear decay to 0 over the last (1 - decay_start) of training."""
    start = int(decay_start * total)
    if step < start:
        return lr
    return lr * max(0.0, (total - step) / max(1, total - start))


def _labeled_batches(n_labeled: int, batch_size: int, g: torch.Generator):
    """Endless stream of index batches over the labeled set (reshuffled each pass)."""
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while buf.numel() < batch_size:
            buf = torch.cat([buf, torch.randperm(n_labeled, generator=g)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


def train_semi_supervised(x_unlabeled: torch.Tensor, x_labeled: torch.Tensor, y_labeled: torch.Tensor, *,
                          num_classes: int = 10, epochs: int = 60, batch_size: int = 100, lr: float = 3e-3,
                          noise_dim: int = 100, unlabeled_weight: float = 1.0, decay_start: float = 0.5,
                          seed: int = 0, progress: bool = True, history: dict | None = None,
                          on_epoch=None) -> tuple[SemiSupervisedDiscriminator, FeatureMatchingGenerator]:
    """Train the (K+1)-way discriminator and the feature-matching generator.

    ``x_unlabeled`` (all training images, labeled ones included) and ``x_labeled`` are
    ``(N, 784)`` in [0, 1]. One epoch = one pass over ``x_unlabeled`` in batches of
    ``batch_size``; each step also draws ``batch_size`` labeled images (the small
    labeled set cycles). Adam(lr, betas (0.5, 0.999); torch's fused kernel), lr decayed linearly to 0 after
    ``decay_start`` of the steps. Deterministic given ``seed``. ``on_epoch(epoch, D, G)``
    is called after every epoch (D and G still in training mode; restore it if changed).
    """
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = SemiSupervisedDiscriminator(num_classes)
        G = FeatureMatchingGenerator(noise_dim)
        # torch's fused Adam: the same update to rounding, 15 % of a 1-thread step less (the
        # multi-tensor kernel's passes over D's 1.5 M parameters cost as much as its noise)
        opt_d = get_optimizer(D, lr, fused=True)
        opt_g = get_optimizer(G, lr, fused=True)
        g = torch.Generator().manual_seed(seed + 1)
        lab = _labeled_batches(x_labeled.shape[0], batch_size, g)
        steps_per_epoch = x_unlabeled.shape[0] // batch_size
        total = epochs * steps_per_epoch
        step = 0
        with tqdm(total=total, disable=not progress, desc="semisup GAN", unit="it", dynamic_ncols=True) as bar:
            for epoch in range(epochs):
                perm = torch.randperm(x_unlabeled.shape[0], generator=g)
                perm2 = torch.randperm(x_unlabeled.shape[0], generator=g)
                for b in range(steps_per_epoch):
                    for opt in (opt_d, opt_g):
                        for group in opt.param_groups:
                            group["lr"] = _lr_at(lr, step, total, decay_start)
                    il = next(lab)
                    xu = x_unlabeled[perm[b * batch_size:(b + 1) * batch_size]]
                    # discriminator
                    z = 2.0 * torch.rand(batch_size, noise_dim, generator=g) - 1.0
                    with torch.no_grad():
                        fake = G(z)
                    # one forward for labeled, unlabeled and generated images (D has no
                    # batch norm, so this equals three separate calls)
                    logits = D(torch.cat([x_labeled[il], xu, fake]))
                    logits_lab, logits_unl, logits_fake = logits.split(batch_size)
                    loss_lab = supervised_loss(logits_lab, y_labeled[il])
                    loss_unl = unsupervised_loss(logits_unl, logits_fake)
                    loss_d = loss_lab + unlabeled_weight * loss_unl
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    # generator: feature matching against a second unlabeled batch; D's
                    # parameters are frozen for this pass (only G gets gradients)
                    xu2 = x_unlabeled[perm2[b * batch_size:(b + 1) * batch_size]]
                    z = 2.0 * torch.rand(batch_size, noise_dim, generator=g) - 1.0
                    D.requires_grad_(False)
                    try:
                        feats, _ = D.features_and_logits(torch.cat([xu2, G(z)]))
                    finally:
                        D.requires_grad_(True)
                    f_real, f_fake = feats.split(batch_size)
                    loss_g = feature_matching_loss(f_real.detach(), f_fake)
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    step += 1
                    bar.update(1)
                    if history is not None:
                        history.setdefault("loss_lab", []).append(loss_lab.item())
                        history.setdefault("loss_unl", []).append(loss_unl.item())
                        history.setdefault("loss_gen", []).append(loss_g.item())
                bar.set_postfix(lab=f"{loss_lab.item():.3f}", unl=f"{loss_unl.item():.3f}",
                                gen=f"{loss_g.item():.3f}", epoch=epoch)
                if on_epoch is not None:
                    on_epoch(epoch + 1, D, G)
    D.eval()
    G.eval()
    return D, G


def train_supervised_baseline(x_labeled: torch.Tensor, y_labeled: torch.Tensor, *, num_classes: int = 10,
                              steps: int = 2400, batch_size: int = 100, lr: float = 3e-3,
                              decay_start: float = 0.5, seed: int = 0, progress: bool = True
                              ) -> SemiSupervisedDiscriminator:
    """The same network as :class:`SemiSupervisedDiscriminator` (with its Gaussian
    noise) trained with the supervised loss only on the labeled set, for ``steps``
    steps of ``batch_size`` labeled images with the same optimizer and schedule."""
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = SemiSupervisedDiscriminator(num_classes)
        opt = get_optimizer(D, lr, fused=True)
        g = torch.Generator().manual_seed(seed + 1)
        lab = _labeled_batches(x_labeled.shape[0], batch_size, g)
        for step in tqdm(range(steps), disable=not progress, desc="supervised baseline", unit="it",
                         dynamic_ncols=True):
            for group in opt.param_groups:
                group["lr"] = _lr_at(lr, step, steps, decay_start)
            il = next(lab)
            loss = supervised_loss(D(x_labeled[il]), y_labeled[il])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    D.eval()
    return D


def run_semi_supervised(data: str = "mnist5k", labels_per_class: int = 10, *, epochs: int = 60,
                        batch_size: int = 100, lr: float = 3e-3, seed: int = 0, split_seed: int = 0,
                        progress: bool = True, out_dir=None, splits=None) -> SemiSupervisedResult:
    """Semi-supervised GAN vs supervised-only baseline on ``data`` (see
    :func:`a3ext.gan.load_digits`): ``labels_per_class`` labeled training images per
    class, every training image as unlabeled data, accuracy on the test split.
    With ``out_dir``, a grid of generated images ``semisup_samples.png`` is saved."""
    from .data import load_digits
    from .train import save_image_grid

    if splits is None:
        splits = load_digits(data, seed=split_seed)
    x_train = as_unit_images(splits.train.images).reshape(-1, 784)
    y_train = splits.train.labels
    x_test = as_unit_images(splits.test.images).reshape(-1, 784)
    y_test = splits.test.labels
    num_classes = len(splits.train.class_names)
    idx = select_labeled(y_train, labels_per_class, seed=seed)
    x_lab, y_lab = x_train[idx], y_train[idx]
    history: dict = {}
    D, G = train_semi_supervised(x_train, x_lab, y_lab, num_classes=num_classes, epochs=epochs,
                                 batch_size=batch_size, lr=lr, seed=seed, progress=progress, history=history)
    steps = epochs * (x_train.shape[0] // batch_size)
    base = train_supervised_baseline(x_lab, y_lab, num_classes=num_classes, steps=steps,
                                     batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    result = SemiSupervisedResult(
        gan_accuracy=accuracy(D, x_test, y_test), baseline_accuracy=accuracy(base, x_test, y_test),
        labels_per_class=labels_per_class, num_labeled=int(idx.numel()), num_unlabeled=int(x_train.shape[0]),
        num_test=int(x_test.shape[0]), epochs=epochs, seed=seed, discriminator=D, baseline=base,
        generator=G, history=history)
    if out_dir is not None:
        from pathlib import Path
        with torch.no_grad():
            z = 2.0 * torch.rand(64, G.noise_dim, generator=torch.Generator().manual_seed(seed)) - 1.0
            save_image_grid(2.0 * G(z) - 1.0, Path(out_dir) / "semisup_samples.png")
    return result
