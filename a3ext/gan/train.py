"""GAN training: the assignment's ``run_a_gan`` loop plus progress bars, sample grids,
loss curves, atomic checkpoints with exact resume, seeds and optional data-parallel
(DDP) training.

One *iteration* is one discriminator (critic) step on one real minibatch; the
generator takes a step after every ``critic_steps`` discriminator steps (1 for the
assignment's GANs, 5 for WGAN-GP). Real images arrive in [0, 1] and are rescaled to
[-1, 1] (``2 * (x - 0.5)``) to match the generator's tanh output.

Reproducibility: all randomness of training (noise, the gradient-penalty mixing
weights) comes from one ``torch.Generator`` seeded by ``seed``, the batch order from
:class:`a3ext.gan.data.BatchLoader` (seeded by ``seed`` and the epoch) and model
initialisation from ``torch.manual_seed(seed)`` inside :func:`build_gan`. A
checkpoint stores models, optimizers, the generator state, the global torch RNG
state and the position (epoch, batch), so stopping after k iterations and resuming
gives bit-identical parameters to training straight through (same machine, same
thread count). Checkpoints contain only tensors and plain Python values and load
with ``torch.load(..., weights_only=True)``.

May import: ``a3ext._util``, ``a3ext.checkpoint``, ``a3ext.datasets``,
``a3ext.gan.data``, ``a3ext.gan.losses``, ``a3ext.gan.models``; outside a3ext: PIL,
matplotlib, numpy, torch, tqdm.
"""
from __future__ import annotations

import copy

from .. import checkpoint as _ckpt
from .._util import atomic_write, in_notebook
import json
import math
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import losses as L
from .data import BatchLoader
from .models import (NOISE_DIM, build_dc_classifier, build_dc_generator, discriminator,
                     generator, get_optimizer, sample_noise)

__all__ = [
    "KINDS",
    "RECIPES",
    "CHECKPOINT_FORMAT",
    "build_gan",
    "GANTrainer",
    "run_a_gan",
    "run_gan",
    "train_gan",
    "save_checkpoint",
    "load_checkpoint",
    "load_generator",
    "generate",
    "save_image_grid",
    "plot_losses",
]

#: The GAN kinds :func:`build_gan` knows.
KINDS = ("vanilla", "ls", "dc", "wgangp")
CHECKPOINT_FORMAT = "a3ext.gan.checkpoint/1"

# kind -> (D builder, G builder, D loss, G loss, lr, betas, critic_steps, gradient-penalty weight)
_KIND_DEFAULTS = {
    # the assignment's three GANs: Adam lr 1e-3, betas (0.5, 0.999), one D step per G step
    "vanilla": ("discriminator", "generator", L.discriminator_loss, L.generator_loss, 1e-3, (0.5, 0.999), 1, 0.0),
    "ls": ("discriminator", "generator", L.ls_discriminator_loss, L.ls_generator_loss, 1e-3, (0.5, 0.999), 1, 0.0),
    "dc": ("dc_classifier", "dc_generator", L.discriminator_loss, L.generator_loss, 1e-3, (0.5, 0.999), 1, 0.0),
    # Gulrajani et al. 2017: lr 1e-4, betas (0, 0.9), 5 critic steps, lambda 10
    "wgangp": ("dc_classifier", "dc_generator", L.wgan_discriminator_loss, L.wgan_generator_loss,
               1e-4, (0.0, 0.9), 5, L.GRADIENT_PENALTY_WEIGHT),
}
#: Training settings by name. ``"assignment"``: the notebook's hyperparameters for
#: vanilla, LS and DC GANs and Gulrajani et al.'s for WGAN-GP (what :func:`build_gan`
#: returns). ``"fast"``: settings that reach good digits in a few minutes of CPU,
#: measured with :mod:`a3ext.gan.metrics` over 3 seeds (``benchmarks/bench_gan.py
#: --only kinds``): the MLP GANs sample from a moving average of G's weights; WGAN-GP
#: takes one critic step per generator step with a larger learning rate (the
#: gradient penalty keeps the critic well-behaved without the 5:1 schedule, which on
#: a CPU budget leaves G with too few steps). The networks and losses are the same.
RECIPES: dict[str, dict[str, dict]] = {
    "assignment": {kind: dict(lr=v[4], g_lr=v[4], betas=v[5], critic_steps=v[6], gradient_penalty_weight=v[7],
                              ema_decay=0.0) for kind, v in _KIND_DEFAULTS.items()},
}
# "fast" = "assignment" with these changes
_FAST_CHANGES = {
    "vanilla": dict(ema_decay=0.999),
    "ls": dict(ema_decay=0.999),
    "dc": {},
    "wgangp": dict(lr=5e-4, g_lr=5e-4, betas=(0.5, 0.9), critic_steps=1),
}
RECIPES["fast"] = {kind: {**RECIPES["assignment"][kind], **changes} for kind, changes in _FAST_CHANGES.items()}

_BUILDERS = {
    "discriminator": lambda noise_dim: discriminator(),
    "generator": generator,
    "dc_classifier": lambda noise_dim: build_dc_classifier(),
    "dc_generator": build_dc_generator,
}


def _check_kind(kind: str) -> str:
    if kind not in _KIND_DEFAULTS:
        raise ValueError(f"unknown GAN kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def build_gan(kind: str, noise_dim: int = NOISE_DIM, seed: int | None = 0) -> dict:
    """Networks, losses and optimizer settings of one GAN kind.

    Returns a dict with ``D``, ``G`` (freshly initialised; with ``seed`` not None the
    initialisation is drawn from ``torch.manual_seed(seed)`` inside
    ``torch.random.fork_rng`` so the global RNG is left as it was),
    ``discriminator_loss``, ``generator_loss``, ``lr``, ``betas``, ``critic_steps``
    and ``gradient_penalty_weight``.
    """
    d_name, g_name, d_loss, g_loss, lr, betas, critic_steps, gp = _KIND_DEFAULTS[_check_kind(kind)]
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        D = _BUILDERS[d_name](noise_dim)
        G = _BUILDERS[g_name](noise_dim)
    return dict(D=D, G=G, discriminator_loss=d_loss, generator_loss=g_loss, lr=lr, betas=betas,
                critic_steps=critic_steps, gradient_penalty_weight=gp)


# --------------------------------------------------------------------------- images

def _to_grid_array(images: torch.Tensor | np.ndarray, nrow: int, padding: int) -> np.ndarray:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = x.detach().to(torch.float32).reshape(-1, 28, 28)
    x = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()  # [-1, 1] -> 0..255
    n = x.shape[0]
    ncol = min(nrow, max(n, 1))
    rows = max(1, math.ceil(n / ncol))
    cell = 28 + padding
    grid = np.full((rows * cell + padding, ncol * cell + padding), 64, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[padding + r * cell: padding + r * cell + 28, padding + c * cell: padding + c * cell + 28] = x[i]
    return grid


def save_image_grid(images, path, nrow: int = 8, padding: int = 2, scale: int = 2) -> Path:
    """Save images ``(N, 784)`` or ``(N, 1, 28, 28)`` with values in [-1, 1] as a PNG
    grid of ``nrow`` columns, each pixel enlarged ``scale`` times. Written atomically."""
    from PIL import Image

    grid = _to_grid_array(images, nrow, padding)
    img = Image.fromarray(grid, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    return _atomic_write(path, lambda f: img.save(f, format="PNG"))


def plot_losses(history: dict, path, title: str | None = None) -> Path:
    """Plot the discriminator and generator losses of a :class:`GANTrainer` history
    against the iteration (with a moving average) and save a PNG atomically."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    for key_it, key_loss, label in (("iteration", "d_loss", "discriminator"),
                                    ("g_iteration", "g_loss", "generator")):
        it = np.asarray(history.get(key_it, []), dtype=np.float64)
        v = np.asarray(history.get(key_loss, []), dtype=np.float64)
        if v.size == 0:
            continue
        line, = ax.plot(it, v, alpha=0.3, linewidth=0.8)
        w = max(1, min(50, v.size // 10))
        if w > 1:
            smooth = np.convolve(v, np.ones(w) / w, mode="valid")
            ax.plot(it[w - 1:], smooth, color=line.get_color(), label=f"{label} (moving mean {w})")
        else:
            line.set_label(label)
    ax.set_xlabel("iteration (discriminator steps)")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _atomic_write(Path(path), lambda f: fig.savefig(f, format="png"))


_atomic_write = atomic_write  # a3ext._util

# ----------------------------------------------------------------------- checkpoints

#: GAN checkpoints in :mod:`a3ext.checkpoint` (digest-verified, ``weights_only``).
CHECKPOINT_KIND = _ckpt.Kind(
    "gan", "a3ext GAN checkpoint",
    legacy_keys=frozenset({"format", "kind", "config", "D", "G", "D_solver", "G_solver", "rng", "torch_rng",
                           "iteration", "epoch", "batch_in_epoch", "history"}),
    is_legacy=lambda s: s.get("format") == CHECKPOINT_FORMAT)


def save_checkpoint(state: dict, path) -> Path:
    """Save a checkpoint dict (see :meth:`GANTrainer.state_dict`) with
    :func:`a3ext.checkpoint.save`: atomic, with the sha256 of its contents."""
    return _ckpt.save(state, path, CHECKPOINT_KIND)


def load_checkpoint(path) -> dict:
    """Load a checkpoint with :func:`a3ext.checkpoint.load` (``weights_only``, onto the
    CPU, digest verified) and check its format; a missing, empty, truncated, corrupt or
    foreign file raises a ``CheckpointError`` (``ValueError``) or
    ``CheckpointNotFoundError`` (``FileNotFoundError``) naming the file."""
    state = _ckpt.load(path, CHECKPOINT_KIND)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise _ckpt.CheckpointError(f"{path} is not an a3ext GAN checkpoint: expected format "
                                    f"{CHECKPOINT_FORMAT!r}, got {state.get('format')!r}")
    return state


def load_generator(checkpoint) -> tuple[nn.Module, dict]:
    """Rebuild the generator of a checkpoint (path or loaded dict) in eval mode.

    Returns ``(G, config)`` where config holds ``kind``, ``noise_dim``, ``seed`` etc.
    """
    state = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    config = dict(state.get("config", {}))
    kind = state.get("kind") or config.get("kind")
    if kind is None:
        raise ValueError("checkpoint has no 'kind'; it was written by a custom GANTrainer "
                         "without kind= and its generator cannot be rebuilt automatically")
    noise_dim = int(config.get("noise_size", NOISE_DIM))
    G = build_gan(kind, noise_dim, seed=None)["G"]
    # the moving average when the trainer kept one (it is what the trainer samples from)
    G.load_state_dict(state["G_ema"] if "G_ema" in state else state["G"])
    G.eval()
    config.setdefault("kind", kind)
    config.setdefault("noise_size", noise_dim)
    return G, config


@torch.no_grad()
def generate(G: nn.Module, n: int, noise_dim: int = NOISE_DIM, seed: int | None = 0,
             batch_size: int = 500) -> torch.Tensor:
    """``n`` generated images ``(n, 784)`` in [-1, 1] from noise seeded by ``seed``,
    with G in eval mode (batch norm uses its running statistics); G's mode is restored."""
    was_training = G.training
    G.eval()
    try:
        z = sample_noise(n, noise_dim, seed=seed)
        out = [G(z[i:i + batch_size]).reshape(-1, 784) for i in range(0, n, batch_size)]
        return torch.cat(out) if out else torch.empty(0, 784)
    finally:
        G.train(was_training)


# --------------------------------------------------------------------------- trainer

def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") and isinstance(getattr(m, "module"), nn.Module) else m


class GANTrainer:
    """The assignment's GAN loop with the training experience around it.

    Args:
        D, G, D_solver, G_solver, discriminator_loss, generator_loss, loader: as in
            the assignment's ``run_a_gan``. ``loader`` yields ``x`` or ``(x, y)`` with x
            ``(N, 1, 28, 28)`` or ``(N, 784)`` in [0, 1]; batches whose size is not
            ``batch_size`` are skipped (as in the assignment). If the loader has
            ``set_epoch`` it is called at every epoch start (exact resume needs an
            order that depends only on the epoch, e.g. :class:`BatchLoader`).
        batch_size, noise_size: as in the assignment.
        critic_steps: discriminator steps per generator step (>= 1).
        gradient_penalty_weight: WGAN-GP lambda; 0 disables the penalty.
        seed: seeds the trainer's own ``torch.Generator`` (noise, penalty weights) and
            the fixed noise used for sample grids.
        show_every: every this many iterations keep 16 generated images in
            :attr:`images` (the assignment's return value) and log the losses.
        out_dir: if set, sample grids ``samples_ITER.png`` every ``sample_every``
            iterations, ``samples_final.png``, ``losses.png``, ``history.json`` and
            ``checkpoint.pt`` are written there.
        checkpoint_every: write ``out_dir/checkpoint.pt`` every this many iterations
            (and always at the end of :meth:`train`); 0 = only at the end.
        progress: show a tqdm progress bar.
        log: called with a message every ``show_every`` iterations (None: silent).
        kind, noise/config extras: recorded in checkpoints so :func:`load_generator`
            can rebuild G.
        ema_decay: 0 (the assignment: sample from G itself) or a decay in (0, 1):
            keep :attr:`G_ema`, an exponential moving average of G's weights updated
            after every generator step: after the n-th, ``ema = d * ema + (1 - d) * G``
            with ``d = min(ema_decay, (1 + n) / (10 + n))`` (the warm-up of
            TensorFlow's ExponentialMovingAverage, so that a short run averages over
            its recent steps and a long one over up to ``1 / (1 - ema_decay)``); batch
            norm statistics are copied from G. Samples, grids and
            :func:`load_generator`'s generator from it. Averaging the generator's last
            few hundred steps removes most of the step-to-step jitter of GAN training
            (Yazici et al. 2019, "The unusual effectiveness of averaging in GAN training").
    """

    def __init__(self, D: nn.Module, G: nn.Module, D_solver, G_solver,
                 discriminator_loss: Callable, generator_loss: Callable, loader: Iterable, *,
                 batch_size: int = 128, noise_size: int = NOISE_DIM, critic_steps: int = 1,
                 gradient_penalty_weight: float = 0.0, seed: int = 0, show_every: int = 250,
                 out_dir=None, sample_every: int | None = None, checkpoint_every: int = 0,
                 progress: bool = True, log: Callable[[str], None] | None = "tqdm",
                 kind: str | None = None, config: dict | None = None, ema_decay: float = 0.0):
        if isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be a number in [0, 1), got {ema_decay!r}")
        if int(critic_steps) != critic_steps or critic_steps < 1:
            raise ValueError(f"critic_steps must be an integer >= 1, got {critic_steps!r}")
        if gradient_penalty_weight < 0:
            raise ValueError(f"gradient_penalty_weight must be >= 0, got {gradient_penalty_weight!r}")
        if show_every < 1:
            raise ValueError(f"show_every must be >= 1, got {show_every!r}")
        if kind is not None:
            _check_kind(kind)
        self.D, self.G = D, G
        self.D_solver, self.G_solver = D_solver, G_solver
        self.discriminator_loss, self.generator_loss = discriminator_loss, generator_loss
        self.loader = loader
        self.batch_size = int(batch_size)
        self.noise_size = int(noise_size)
        self.critic_steps = int(critic_steps)
        self.gradient_penalty_weight = float(gradient_penalty_weight)
        self.seed = int(seed)
        self.show_every = int(show_every)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.sample_every = int(sample_every) if sample_every else self.show_every
        self.checkpoint_every = int(checkpoint_every or 0)
        self.progress = progress
        self.log = log
        self.kind = kind
        self.config = dict(config or {})
        self.ema_decay = float(ema_decay)
        #: The moving average of G's weights (``ema_decay > 0``), else None.
        self.G_ema: nn.Module | None = None
        if self.ema_decay > 0:
            self.G_ema = copy.deepcopy(_unwrap(G)).requires_grad_(False)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.fixed_noise = sample_noise(64, self.noise_size, seed=self.seed + 7919)
        self.iteration = 0       # discriminator steps taken
        self.epoch = 0           # epochs completed
        self.batch_in_epoch = 0  # loader batches consumed in the current epoch
        self.history: dict[str, list] = {"iteration": [], "d_loss": [], "g_iteration": [], "g_loss": []}
        self.images: list[np.ndarray] = []
        self._last_fake: torch.Tensor | None = None
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            self._rank, self._world = dist.get_rank(), dist.get_world_size()
        else:
            self._rank, self._world = 0, 1
        self._is_main = self._rank == 0

    # -- one iteration -------------------------------------------------------------
    def _noise(self, n: int) -> torch.Tensor:
        """This process's n noise vectors. Under DDP every rank draws the noise of all
        ranks from the same generator state and keeps its own slice, so the ranks get
        different noise while their generator states stay identical (a checkpoint
        written by rank 0 resumes every rank exactly)."""
        z = sample_noise(n * self._world, self.noise_size, generator=self.rng)
        return z[self._rank * n:(self._rank + 1) * n]

    def step(self, x: torch.Tensor) -> tuple[float, float | None]:
        """One discriminator step on real batch ``x`` (values in [0, 1]) and, every
        ``critic_steps`` iterations, one generator step. Returns (d_loss, g_loss or None)."""
        D, G, n = self.D, self.G, x.shape[0]
        D_plain, G_plain = _unwrap(D), _unwrap(G)
        real = 2.0 * (x.to(torch.float32) - 0.5)
        self.D_solver.zero_grad(set_to_none=True)
        z = self._noise(n)
        with torch.no_grad():  # == G(z).detach(); G's batch-norm statistics still update
            fake = G_plain(z).reshape(n, 1, 28, 28)
        if D is D_plain:
            logits_real = D(real)
            logits_fake = D(fake)
        else:  # DDP: one forward per backward (D has no batch norm, so this is the same)
            logits = D(torch.cat([real.reshape(n, 1, 28, 28), fake]))
            logits_real, logits_fake = logits[:n], logits[n:]
        d_loss = self.discriminator_loss(logits_real, logits_fake)
        d_total = d_loss
        if self.gradient_penalty_weight > 0:
            d_total = d_loss + L.gradient_penalty(D_plain, real.reshape(n, 1, 28, 28), fake,
                                                  self.gradient_penalty_weight, generator=self.rng)
        d_total.backward()
        self.D_solver.step()
        self.iteration += 1
        d_value = float(d_total.detach())
        self.history["iteration"].append(self.iteration)
        self.history["d_loss"].append(d_value)

        g_value = None
        if self.iteration % self.critic_steps == 0:
            self.G_solver.zero_grad(set_to_none=True)
            params = list(D.parameters())
            flags = [p.requires_grad for p in params]
            for p in params:            # no gradients into D during the G step (faster;
                p.requires_grad_(False)  # D's grads are reset before its next step anyway)
            try:
                z = self._noise(n)
                fake_g = G(z)
                g_loss = self.generator_loss(D_plain(fake_g.reshape(n, 1, 28, 28)))
                g_loss.backward()
            finally:
                for p, f in zip(params, flags):
                    p.requires_grad_(f)
            self.G_solver.step()
            g_value = float(g_loss.detach())
            if self.G_ema is not None:
                self._update_ema()
            self.history["g_iteration"].append(self.iteration)
            self.history["g_loss"].append(g_value)
            self._last_fake = fake_g.detach()
        return d_value, g_value

    @torch.no_grad()
    def _update_ema(self) -> None:
        G = _unwrap(self.G)
        n = len(self.history["g_loss"]) + 1  # this is the n-th generator step (restored on resume)
        decay = min(self.ema_decay, (1.0 + n) / (10.0 + n))
        for pe, p in zip(self.G_ema.parameters(), G.parameters()):
            pe.lerp_(p.detach(), 1.0 - decay)
        for be, b in zip(self.G_ema.buffers(), G.buffers()):
            be.copy_(b)

    @property
    def sampler(self) -> nn.Module:
        """The generator samples come from: :attr:`G_ema` when kept, else G (unwrapped)."""
        return self.G_ema if self.G_ema is not None else _unwrap(self.G)

    # -- the loop --------------------------------------------------------------------
    def train(self, num_epochs: int = 10, max_iterations: int | None = None,
              max_seconds: float | None = None) -> dict:
        """Train until ``num_epochs`` epochs are complete (counting those done before a
        resume), ``max_iterations`` total iterations, or ``max_seconds`` of wall time in
        this call, whichever comes first. Returns :attr:`history`."""
        import time

        from tqdm.auto import tqdm

        deadline = None if max_seconds is None else time.perf_counter() + max_seconds

        try:
            per_epoch = len(self.loader)
        except TypeError:
            per_epoch = None
        total = per_epoch * num_epochs if per_epoch is not None else None
        if max_iterations is not None:
            total = max_iterations if total is None else min(total, max_iterations)
        bar = tqdm(total=total, initial=min(self.iteration, total or self.iteration),
                   disable=not (self.progress and self._is_main), desc=f"gan {self.kind or ''}".strip(),
                   unit="it", dynamic_ncols=True, leave=True)
        stopped = False
        try:
            while self.epoch < num_epochs and not stopped:
                if hasattr(self.loader, "set_epoch"):
                    self.loader.set_epoch(self.epoch)
                for b, batch in enumerate(self.loader):
                    if b < self.batch_in_epoch:
                        continue  # resuming mid-epoch: these batches were used already
                    if (max_iterations is not None and self.iteration >= max_iterations) or \
                            (deadline is not None and time.perf_counter() >= deadline):
                        stopped = True
                        break
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    self.batch_in_epoch = b + 1
                    if x.shape[0] != self.batch_size:
                        continue
                    d_value, g_value = self.step(x)
                    bar.update(1)
                    if g_value is not None:
                        bar.set_postfix(D=f"{d_value:.4f}", G=f"{g_value:.4f}", epoch=self.epoch)
                    self._after_iteration(d_value)
                else:
                    self.epoch += 1
                    self.batch_in_epoch = 0
        finally:
            bar.close()
        self._finish()
        return self.history

    def _after_iteration(self, d_value: float) -> None:
        it = self.iteration
        if (it - 1) % self.show_every == 0:  # the assignment shows at iter_count 0, 250, ...
            g = self.history["g_loss"][-1] if self.history["g_loss"] else float("nan")
            if self._last_fake is not None:
                self.images.append(self._last_fake[:16].reshape(-1, 784).cpu().numpy())
            if self.log is not None and self._is_main:
                msg = f"Iter: {it - 1}, D: {d_value:.4}, G:{g:.4}"
                if self.log == "tqdm":
                    from tqdm.auto import tqdm
                    tqdm.write(msg)
                else:
                    self.log(msg)
        if self.out_dir is not None and self._is_main:
            if it % self.sample_every == 0:
                self.save_samples(self.out_dir / f"samples_{it:06d}.png")
            if self.checkpoint_every and it % self.checkpoint_every == 0:
                self.save_checkpoint(self.out_dir / "checkpoint.pt")

    def _finish(self) -> None:
        if self.out_dir is None or not self._is_main:
            return
        self.save_samples(self.out_dir / "samples_final.png")
        plot_losses(self.history, self.out_dir / "losses.png", title=f"GAN {self.kind or ''} losses")
        _atomic_write(self.out_dir / "history.json",
                      lambda f: f.write(json.dumps(self.history).encode()))
        self.save_checkpoint(self.out_dir / "checkpoint.pt")

    @torch.no_grad()
    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Generated images ``(N, 784)`` from ``noise`` (default: the fixed grid noise)
        by :attr:`sampler` in eval mode; its mode is restored."""
        G = self.sampler
        was = G.training
        G.eval()
        try:
            return G(self.fixed_noise if noise is None else noise).reshape(-1, 784)
        finally:
            G.train(was)

    def save_samples(self, path) -> Path:
        return save_image_grid(self.sample(), path)

    # -- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed for an exact resume, as tensors and plain values."""
        config = dict(self.config)
        config.update(batch_size=self.batch_size, noise_size=self.noise_size,
                      critic_steps=self.critic_steps, gradient_penalty_weight=self.gradient_penalty_weight,
                      seed=self.seed, kind=self.kind, ema_decay=self.ema_decay)
        state = {
            "format": CHECKPOINT_FORMAT,
            "kind": self.kind,
            "config": config,
            "D": _unwrap(self.D).state_dict(),
            "G": _unwrap(self.G).state_dict(),
            "D_solver": self.D_solver.state_dict(),
            "G_solver": self.G_solver.state_dict(),
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "iteration": self.iteration,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "history": {k: list(v) for k, v in self.history.items()},
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not an a3ext GAN checkpoint: format {state.get('format')!r}, "
                             f"expected {CHECKPOINT_FORMAT!r}")
        if self.kind is not None and state.get("kind") not in (None, self.kind):
            raise ValueError(f"checkpoint is for kind {state.get('kind')!r}, this trainer is {self.kind!r}")
        cfg = state.get("config", {})
        for key in ("batch_size", "noise_size", "critic_steps", "seed", "ema_decay"):
            if key in cfg and cfg[key] != getattr(self, key):
                raise ValueError(f"checkpoint was written with {key}={cfg[key]!r}, this trainer has "
                                 f"{key}={getattr(self, key)!r}; resume with the same settings")
        _unwrap(self.D).load_state_dict(state["D"])
        _unwrap(self.G).load_state_dict(state["G"])
        if self.G_ema is not None:
            if "G_ema" not in state:
                raise ValueError("checkpoint has no moving average of G (it was written with ema_decay=0); "
                                 f"resume with ema_decay=0, this trainer has ema_decay={self.ema_decay!r}")
            self.G_ema.load_state_dict(state["G_ema"])
        self.D_solver.load_state_dict(state["D_solver"])
        self.G_solver.load_state_dict(state["G_solver"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.iteration = int(state["iteration"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.history = {k: list(v) for k, v in state["history"].items()}

    def save_checkpoint(self, path) -> Path:
        return save_checkpoint(self.state_dict(), path)

    def resume(self, path) -> None:
        self.load_state_dict(load_checkpoint(path))


class SampleGrids(list):
    """:func:`run_gan`'s return value: the ``(16, 784)`` numpy arrays of generated
    images kept every ``show_every`` iterations (a list, with a one-line repr so that a
    notebook cell ending in ``run_gan(...)`` does not print every pixel)."""

    def __repr__(self) -> str:
        return f"<{len(self)} sample grids of 16 images (one every show_every iterations)>"


#: Images per epoch of the notebook's ``loader_train`` (``NUM_TRAIN`` MNIST digits).
NOTEBOOK_EPOCH_IMAGES = 50000


def default_loader(batch_size: int = 128, seed: int = 0) -> BatchLoader:
    """The notebooks' ``loader_train`` when none is given: the 5,000 real MNIST digits
    embedded with a3ext (:func:`a3ext.datasets.mnist_5k`), each epoch 10 shuffled passes
    over them = the notebook's 50,000 images per epoch (so ``num_epochs`` means the
    same number of iterations as in the notebook: 390 per epoch at batch 128), batches
    of ``batch_size`` as ``(images (N, 1, 28, 28) in [0, 1], labels)``."""
    from .. import datasets

    digits = datasets.mnist_5k()
    repeats = max(1, NOTEBOOK_EPOCH_IMAGES // digits.images.shape[0])
    return BatchLoader(digits.images, digits.labels, batch_size=batch_size, shuffle=True, seed=seed,
                       repeats=repeats)


def run_a_gan(D, G, D_solver, G_solver, discriminator_loss, generator_loss, show_every: int = 250,
              batch_size: int = 128, noise_size: int = NOISE_DIM, num_epochs: int = 10, *,
              loader_train=None, **kwargs) -> None:
    """The assignment's training loop, with its signature and return value (None):
    ``run_a_gan(D, G, D_solver, G_solver, discriminator_loss, generator_loss,
    show_every=250, batch_size=128, noise_size=96, num_epochs=10)``. Prints
    ``Iter: i, D: ..., G: ...`` every ``show_every`` iterations and shows the 16 images
    in a Jupyter kernel, as the notebook does. Keyword-only extras as :func:`run_gan`,
    which also returns the kept images."""
    run_gan(D, G, D_solver, G_solver, discriminator_loss, generator_loss, show_every, batch_size, noise_size,
            num_epochs, loader_train=loader_train, **kwargs)


def run_gan(D, G, D_solver, G_solver, discriminator_loss, generator_loss, show_every: int = 250,
            batch_size: int = 128, noise_size: int = NOISE_DIM, num_epochs: int = 10, *,
            loader_train=None, **kwargs) -> SampleGrids:
    """:func:`run_a_gan` returning the 16 generated images kept every ``show_every``
    iterations (:class:`SampleGrids`).

    ``loader_train`` (keyword-only; the notebook's global): batches ``(x, y)`` of
    images in [0, 1]; default: :func:`default_loader` (the embedded MNIST digits at
    ``batch_size``). Extra keyword arguments go to :class:`GANTrainer`
    (``critic_steps``, ``gradient_penalty_weight``, ``seed``, ``out_dir``,
    ``checkpoint_every``, ``progress``, ``log``, ``kind``, ``max_iterations``,
    ``resume`` = checkpoint path).
    """
    max_iterations = kwargs.pop("max_iterations", None)
    resume = kwargs.pop("resume", None)
    if loader_train is None:
        loader_train = default_loader(batch_size, seed=kwargs.get("seed", 0))
    notebook = "log" not in kwargs and in_notebook()
    trainer = GANTrainer(D, G, D_solver, G_solver, discriminator_loss, generator_loss, loader_train,
                         batch_size=batch_size, noise_size=noise_size, show_every=show_every, **kwargs)
    if notebook:
        def show(msg: str) -> None:
            import matplotlib.pyplot as plt

            print(msg)
            if trainer.images:
                show_images(trainer.images[-1])
                plt.show()
            print()
        trainer.log = show
    if resume is not None:
        trainer.resume(resume)
    trainer.train(num_epochs, max_iterations=max_iterations)
    return SampleGrids(trainer.images)


def show_images(images):
    """The notebook's ``show_images``: a square grid of images (a (N, D) array or
    tensor of flattened square images, or (N, ..., H, W)) drawn with matplotlib in the
    current figure; returns None, as the notebook's."""
    import matplotlib.gridspec as gridspec
    import matplotlib.pyplot as plt

    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.reshape(np.asarray(images), [np.asarray(images).shape[0], -1])
    sqrtn = int(np.ceil(np.sqrt(images.shape[0])))
    sqrtimg = int(np.ceil(np.sqrt(images.shape[1])))
    plt.figure(figsize=(sqrtn, sqrtn))
    gs = gridspec.GridSpec(sqrtn, sqrtn)
    gs.update(wspace=0.05, hspace=0.05)
    for i, img in enumerate(images):
        ax = plt.subplot(gs[i])
        plt.axis("off")
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_aspect("equal")
        plt.imshow(img.reshape([sqrtimg, sqrtimg]))
    return None


def train_gan(kind: str, images, *, labels=None, num_epochs: int = 10, batch_size: int = 128,
              noise_dim: int = NOISE_DIM, seed: int = 0, out_dir=None, resume=False,
              show_every: int = 250, sample_every: int | None = None, checkpoint_every: int = 0,
              critic_steps: int | None = None, gradient_penalty_weight: float | None = None,
              lr: float | None = None, betas: tuple[float, float] | None = None,
              g_lr: float | None = None, ema_decay: float | None = None, recipe: str = "assignment",
              max_iterations: int | None = None, max_seconds: float | None = None,
              progress: bool = True, log="tqdm", distributed: bool | None = None) -> GANTrainer:
    """Build a GAN of ``kind`` (vanilla | ls | dc | wgangp) and train it on ``images``.

    Args:
        images: real digits (anything :func:`a3ext.gan.data.as_unit_images` accepts).
        resume: False; True to continue from ``out_dir/checkpoint.pt`` if it exists; or
            a checkpoint path.
        max_iterations, max_seconds: stop earlier (total iterations; wall time of this call).
        critic_steps, gradient_penalty_weight, lr, betas: override the kind's defaults
            (vanilla/ls/dc: 1, 0, 1e-3, (0.5, 0.999); wgangp: 5, 10, 1e-4, (0.0, 0.9)).
        g_lr: the generator's learning rate when it differs from D's (default: lr).
        ema_decay: keep a moving average of G's weights and sample from it (see
            :class:`GANTrainer`); 0 = the assignment's behaviour.
        recipe: the defaults for the five settings above, a key of :data:`RECIPES`
            ("assignment", the default, or "fast"); an explicit argument wins.
        distributed: wrap D and G in DistributedDataParallel and shard the batches
            over the process group (default: when torch.distributed is initialised).
            Every rank gets ``batch_size`` images per step.
    Returns the :class:`GANTrainer` (``.D``, ``.G``, ``.history``, ``.images``).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    spec = build_gan(kind, noise_dim, seed=seed)
    D, G = spec["D"], spec["G"]
    r = RECIPES[recipe][kind]
    if g_lr is None:  # an explicit lr sets both networks' rates, as before g_lr existed
        g_lr = r["g_lr"] if lr is None else lr
    lr = r["lr"] if lr is None else lr
    betas = tuple(r["betas"]) if betas is None else tuple(betas)
    critic_steps = r["critic_steps"] if critic_steps is None else critic_steps
    gradient_penalty_weight = r["gradient_penalty_weight"] if gradient_penalty_weight is None \
        else gradient_penalty_weight
    ema_decay = r["ema_decay"] if ema_decay is None else ema_decay
    dist = torch.distributed
    if distributed is None:
        distributed = dist.is_available() and dist.is_initialized()
    shard = (0, 1)
    if distributed:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("distributed=True needs an initialised torch.distributed process group "
                               "(run under torchrun and call torch.distributed.init_process_group)")
        from torch.nn.parallel import DistributedDataParallel as DDP
        # BatchNorm statistics stay per-process; DDP broadcasts buffers from rank 0 each forward
        D, G = DDP(D), DDP(G)
        shard = (dist.get_rank(), dist.get_world_size())
    loader = BatchLoader(images, labels, batch_size=batch_size, shuffle=True, seed=seed, shard=shard)
    D_solver = get_optimizer(D, lr, betas, fused=True)  # the models are built on the CPU
    G_solver = get_optimizer(G, g_lr, betas, fused=True)
    trainer = GANTrainer(
        D, G, D_solver, G_solver, spec["discriminator_loss"], spec["generator_loss"], loader,
        batch_size=batch_size, noise_size=noise_dim,
        critic_steps=critic_steps, gradient_penalty_weight=gradient_penalty_weight, seed=seed,
        show_every=show_every, out_dir=out_dir, sample_every=sample_every, checkpoint_every=checkpoint_every,
        progress=progress, log=log, kind=kind, ema_decay=ema_decay,
        config=dict(recipe=recipe, lr=D_solver.param_groups[0]["lr"], g_lr=G_solver.param_groups[0]["lr"],
                    betas=list(D_solver.param_groups[0]["betas"]), world_size=shard[1]))
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else (
            Path(out_dir) / "checkpoint.pt" if out_dir is not None else None)
        if path is None:
            raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/checkpoint.pt)")
        if path.is_file():
            trainer.resume(path)
        elif not isinstance(resume, bool):
            raise FileNotFoundError(f"resume: checkpoint not found: {path}")
    trainer.train(num_epochs, max_iterations=max_iterations, max_seconds=max_seconds)
    return trainer
