"""The assignment's GAN networks, noise and optimizer.

All images are 28x28 single-channel digits. Generators output flattened images of
shape ``(N, 784)`` with values in ``(-1, 1)`` (tanh); discriminators accept either
``(N, 784)`` or ``(N, 1, 28, 28)`` images scaled to ``[-1, 1]`` and return one
logit (score) per image, shape ``(N, 1)``.

Parameter counts (computed from the layer shapes; see ``python_tests/test_gan.py``):
``discriminator()`` 267,009; ``generator(4)`` 1,858,320 (``generator(96)``
1,952,528); ``build_dc_classifier()`` 1,102,721; ``build_dc_generator(4)``
6,580,801 (``build_dc_generator(96)`` 6,675,009).

May import: no other a3ext module; outside a3ext: torch.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "NOISE_DIM",
    "IMAGE_SIZE",
    "sample_noise",
    "Flatten",
    "Unflatten",
    "initialize_weights",
    "xavier_init",
    "discriminator",
    "generator",
    "build_dc_classifier",
    "build_dc_generator",
    "get_optimizer",
    "count_params",
]

#: The assignment's default noise dimension.
NOISE_DIM = 96
#: Pixels of one flattened digit (28 x 28).
IMAGE_SIZE = 784


def sample_noise(batch_size: int, dim: int, *, seed: int | None = None,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Uniform noise in (-1, 1) of shape ``(batch_size, dim)``.

    Args:
        batch_size: number of noise vectors N (>= 0).
        dim: dimension of each vector (>= 1).
        seed: if given, the noise comes from a fresh generator seeded with it, so the
            same seed always gives the same noise and the global RNG is untouched.
        generator: an explicit ``torch.Generator`` to draw from (exclusive with seed).
            Without either, the global torch RNG is used (the assignment's behaviour).
    """
    if int(batch_size) != batch_size or batch_size < 0:
        raise ValueError(f"sample_noise: batch_size must be an integer >= 0, got {batch_size!r}")
    if int(dim) != dim or dim < 1:
        raise ValueError(f"sample_noise: dim must be an integer >= 1, got {dim!r}")
    if seed is not None and generator is not None:
        raise ValueError("sample_noise: pass either seed or generator, not both")
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    u = torch.rand(int(batch_size), int(dim), generator=generator, dtype=dtype)
    if device is not None:
        u = u.to(device)
    return 2.0 * u - 1.0


class Flatten(nn.Module):
    """``(N, ...)`` -> ``(N, prod(...))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class Unflatten(nn.Module):
    """The assignment's ``Unflatten(N=-1, C=128, H=7, W=7)``: ``(N, C*H*W)`` (or already
    ``(N, C, H, W)``) -> ``(N, C, H, W)``. ``N = -1`` takes the batch size from the
    input; a fixed ``N`` (the notebook's ``Unflatten(batch_size, 1, 28, 28)``) must
    match it."""

    def __init__(self, N: int = -1, C: int = 128, H: int = 7, W: int = 7):
        super().__init__()
        self.N, self.C, self.H, self.W = N, C, H, W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0] if self.N == -1 else self.N
        if x.numel() != n * self.C * self.H * self.W:
            raise ValueError(f"Unflatten: expected {self.C * self.H * self.W} values per sample "
                             f"(N={self.N}, C={self.C}, H={self.H}, W={self.W}), got input shape {tuple(x.shape)}")
        return x.reshape(n, self.C, self.H, self.W)

    def extra_repr(self) -> str:
        return f"N={self.N}, C={self.C}, H={self.H}, W={self.W}"


def initialize_weights(m: nn.Module) -> None:
    """The assignment's initializer (use with ``model.apply(initialize_weights)``):
    Xavier-uniform weights for ``nn.Linear`` and ``nn.ConvTranspose2d``; other layers
    and all biases are left as they are."""
    if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(m.weight.data)


def xavier_init(m: nn.Module) -> None:
    """a3ext's initializer for the networks it builds: Xavier-uniform weights and zero
    biases for Linear / Conv2d / ConvTranspose2d (use with ``model.apply``)."""
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(m.weight.data)
        if m.bias is not None:
            nn.init.zeros_(m.bias.data)


def discriminator() -> nn.Sequential:
    """The vanilla-GAN discriminator: Flatten -> FC 784->256 -> LeakyReLU(0.01) ->
    FC 256->256 -> LeakyReLU(0.01) -> FC 256->1. Input ``(N, 784)`` or
    ``(N, 1, 28, 28)``; output logits ``(N, 1)``."""
    model = nn.Sequential(
        Flatten(),
        nn.Linear(IMAGE_SIZE, 256),
        nn.LeakyReLU(0.01),
        nn.Linear(256, 256),
        nn.LeakyReLU(0.01),
        nn.Linear(256, 1),
    )
    model.apply(xavier_init)
    return model


def generator(noise_dim: int = NOISE_DIM) -> nn.Sequential:
    """The vanilla-GAN generator: FC noise_dim->1024 -> ReLU -> FC 1024->1024 -> ReLU
    -> FC 1024->784 -> tanh. Input noise ``(N, noise_dim)``; output images
    ``(N, 784)`` in (-1, 1)."""
    _check_noise_dim(noise_dim)
    model = nn.Sequential(
        nn.Linear(noise_dim, 1024),
        nn.ReLU(),
        nn.Linear(1024, 1024),
        nn.ReLU(),
        nn.Linear(1024, IMAGE_SIZE),
        nn.Tanh(),
    )
    model.apply(xavier_init)
    return model


def build_dc_classifier() -> nn.Sequential:
    """The DCGAN discriminator: Unflatten to (N, 1, 28, 28) -> conv 5x5 32 ->
    LeakyReLU(0.01) -> maxpool 2x2 -> conv 5x5 64 -> LeakyReLU(0.01) -> maxpool 2x2
    -> Flatten -> FC 4*4*64 -> 4*4*64 -> LeakyReLU(0.01) -> FC 4*4*64 -> 1.
    Input ``(N, 784)`` or ``(N, 1, 28, 28)``; output logits ``(N, 1)``. No batch
    norm, so it is also a valid WGAN-GP critic (the penalty is per sample)."""
    model = nn.Sequential(
        Unflatten(C=1, H=28, W=28),
        nn.Conv2d(1, 32, kernel_size=5, stride=1),
        nn.LeakyReLU(0.01),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(32, 64, kernel_size=5, stride=1),
        nn.LeakyReLU(0.01),
        nn.MaxPool2d(kernel_size=2, stride=2),
        Flatten(),
        nn.Linear(4 * 4 * 64, 4 * 4 * 64),
        nn.LeakyReLU(0.01),
        nn.Linear(4 * 4 * 64, 1),
    )
    model.apply(xavier_init)
    return model


def build_dc_generator(noise_dim: int = NOISE_DIM) -> nn.Sequential:
    """The DCGAN generator (InfoGAN architecture): FC noise_dim->1024 -> ReLU -> BN ->
    FC 1024->7*7*128 -> ReLU -> BN -> reshape (N, 128, 7, 7) -> deconv 4x4 stride 2
    pad 1 -> 64 channels -> ReLU -> BN -> deconv 4x4 stride 2 pad 1 -> 1 channel ->
    tanh -> Flatten. Input noise ``(N, noise_dim)``; output images ``(N, 784)``."""
    _check_noise_dim(noise_dim)
    model = nn.Sequential(
        nn.Linear(noise_dim, 1024),
        nn.ReLU(),
        nn.BatchNorm1d(1024),
        nn.Linear(1024, 7 * 7 * 128),
        nn.ReLU(),
        nn.BatchNorm1d(7 * 7 * 128),
        Unflatten(C=128, H=7, W=7),
        nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(64),
        nn.ConvTranspose2d(64, 1, kernel_size=4, stride=2, padding=1),
        nn.Tanh(),
        Flatten(),
    )
    model.apply(xavier_init)
    return model


def get_optimizer(model: nn.Module, lr: float = 1e-3, betas: tuple[float, float] = (0.5, 0.999), *,
                  fused: bool = False) -> torch.optim.Adam:
    """Adam with the assignment's hyperparameters (lr 1e-3, betas (0.5, 0.999)).

    ``fused=True`` (keyword-only, a3ext's): torch's fused kernel, which updates all
    parameters in one pass — the same update to rounding, 10-23 % less time per DCGAN
    or vanilla-GAN iteration on a 2-core CPU than the default multi-tensor kernel
    (``benchmarks/bench_gan.py --only optimizer``, torch 2.13); the parameters must be
    floating point on the CPU or a GPU."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"get_optimizer: model must be a torch.nn.Module, got {type(model).__name__}")
    return torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas), fused=True if fused else None)


def count_params(model: nn.Module) -> int:
    """Total number of parameter elements (the assignment's ``count_params``)."""
    return sum(p.numel() for p in model.parameters())


def _check_noise_dim(noise_dim) -> None:
    if int(noise_dim) != noise_dim or noise_dim < 1:
        raise ValueError(f"noise_dim must be an integer >= 1, got {noise_dim!r}")
