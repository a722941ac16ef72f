"""GAN losses: vanilla (binary cross-entropy on logits), least squares and WGAN-GP.

Every loss takes discriminator outputs of shape ``(N,)`` or ``(N, 1)`` (one logit or
score per image; the real and fake batches may differ in size) and returns a scalar
tensor. The two halves of a discriminator loss are averaged over their own batch
and then added, as in the assignment.

May import: no other a3ext module; outside a3ext: numpy, torch.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = [
    "bce_loss",
    "discriminator_loss",
    "generator_loss",
    "ls_discriminator_loss",
    "ls_generator_loss",
    "wgan_discriminator_loss",
    "wgan_generator_loss",
    "gradient_penalty",
    "GRADIENT_PENALTY_WEIGHT",
]

#: lambda of Gulrajani et al. 2017.
GRADIENT_PENALTY_WEIGHT = 10.0


def _scores(x: torch.Tensor, name: str) -> torch.Tensor:
    """Check that ``x`` is (N,) or (N, 1) floating point (a tensor, or a numpy array as
    the notebooks' checks pass); return it as an (N,) tensor."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not (x.dim() == 1 or (x.dim() == 2 and x.shape[1] == 1)):
        raise ValueError(f"{name} must have shape (N,) or (N, 1), got {tuple(x.shape)}")
    if x.shape[0] == 0:  # the mean over no scores would be NaN
        raise ValueError(f"{name} must hold at least one score (N >= 1), got shape {tuple(x.shape)}")
    return x[:, 0] if x.dim() == 2 else x


def bce_loss(input: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
    """Numerically stable mean binary cross-entropy of logits ``input`` against
    targets in [0, 1]: mean(max(s, 0) - s*y + log(1 + exp(-|s|))). Tensors or numpy arrays."""
    if isinstance(input, np.ndarray):
        input = torch.from_numpy(input)
    if isinstance(target, np.ndarray):
        target = torch.from_numpy(target)
    if not isinstance(input, torch.Tensor) or not input.is_floating_point():
        raise TypeError(f"bce_loss: input must be a floating-point torch.Tensor or numpy array, got "
                        f"{type(input).__name__}" + (f" of dtype {input.dtype}" if hasattr(input, 'dtype') else ""))
    target = torch.as_tensor(target, dtype=input.dtype, device=input.device)
    if target.dim() > 0 and tuple(target.shape) != tuple(input.shape):
        if input.dim() == target.dim() + 1 and input.shape[-1] == 1 and input.shape[:-1] == target.shape:
            input = input.squeeze(-1)  # (N, 1) logits against (N,) labels, as BCEWithLogitsLoss(input.squeeze(), y)
        else:
            try:
                fits = torch.broadcast_shapes(target.shape, input.shape) == input.shape
            except RuntimeError:
                fits = False
            if not fits:
                raise ValueError(f"bce_loss: target must be a number, of input's shape {tuple(input.shape)} "
                                 f"or broadcastable to it, but got shape {tuple(target.shape)}")
    target = target.expand_as(input)
    loss = input.clamp(min=0) - input * target + torch.log1p(torch.exp(-input.abs()))
    return loss.mean()


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Vanilla GAN discriminator loss:
    ``mean(-log sigmoid(logits_real)) + mean(-log(1 - sigmoid(logits_fake)))``."""
    real = _scores(logits_real, "logits_real")
    fake = _scores(logits_fake, "logits_fake")
    return bce_loss(real, 1.0) + bce_loss(fake, 0.0)


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Vanilla (non-saturating) GAN generator loss: ``mean(-log sigmoid(logits_fake))``."""
    return bce_loss(_scores(logits_fake, "logits_fake"), 1.0)


def ls_discriminator_loss(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN discriminator loss:
    ``0.5 * mean((scores_real - 1)^2) + 0.5 * mean(scores_fake^2)``."""
    real = _scores(scores_real, "scores_real")
    fake = _scores(scores_fake, "scores_fake")
    return 0.5 * ((real - 1.0) ** 2).mean() + 0.5 * (fake ** 2).mean()


def ls_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss: ``0.5 * mean((scores_fake - 1)^2)``."""
    return 0.5 * ((_scores(scores_fake, "scores_fake") - 1.0) ** 2).mean()


def wgan_discriminator_loss(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss without the penalty: ``mean(scores_fake) - mean(scores_real)``
    (add :func:`gradient_penalty` for WGAN-GP)."""
    return _scores(scores_fake, "scores_fake").mean() - _scores(scores_real, "scores_real").mean()


def wgan_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss: ``-mean(scores_fake)``."""
    return -_scores(scores_fake, "scores_fake").mean()


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     weight: float = GRADIENT_PENALTY_WEIGHT, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP gradient penalty ``weight * mean((||grad_x D(x_hat)||_2 - 1)^2)`` at
    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1)`` per sample.

    ``real`` and ``fake`` are image batches of the same shape ``(N, ...)``; the graph
    is kept (``create_graph=True``) so the penalty can be backpropagated into D.
    ``generator`` draws eps (default: the global torch RNG).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake must have the same shape, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    n = real.shape[0]
    eps = torch.rand(n, *([1] * (real.dim() - 1)), generator=generator, dtype=real.dtype)
    eps = eps.to(real.device)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    scores = _scores(D(x_hat), "D(x_hat)")
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # sqrt(. + tiny) keeps the double-backward finite where a gradient is exactly 0
    norms = torch.sqrt(grad.reshape(n, -1).pow(2).sum(dim=1) + 1e-12)
    return weight * ((norms - 1.0) ** 2).mean()
