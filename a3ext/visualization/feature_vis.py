"""Class visualizations a person recognises: the techniques of the feature-visualization
literature (Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017; the
lucid / lucent libraries) beside the assignment's pixel-space gradient ascent
(:func:`a3ext.visualization.create_class_visualization`, kept exact).

The image is not optimised pixel by pixel. It is parameterised

* in a **Fourier basis** (:func:`fourier_image`): the optimiser moves the coefficients of
  a 2-D real FFT, scaled by 1/frequency, so every step changes mostly low frequencies
  and the high-frequency "adversarial noise" that pixel-space ascent produces is
  expensive;
* in a **decorrelated colour space** (:func:`to_rgb`): the three channels are
  whitened ImageNet colour directions, mapped to RGB with the square root of the
  colour correlation matrix, then squashed to [0, 1] with a sigmoid;

and every step sees a **randomly transformed** copy (:func:`standard_transforms`:
padding, jitter, scale 0.9-1.1, rotation +-10 degrees, jitter), so only features that
survive small geometric changes are reinforced -- which is also what makes the result
look like the class to a person rather than only to the network.

:func:`render_class` runs the loop (Adam, seeded); :func:`transformed_probability`
measures what a person would care about: the target's mean softmax probability over
random crops, scales (0.8-1.2) and rotations (+-10 degrees) of the final image,
for any method's image.

May import: torch, :mod:`._common`, :mod:`a3ext.imaging` (the SqueezeNet statistics).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_learning_rate, eval_mode

__all__ = ["FeatureVisualization", "render_class", "transformed_probability", "fourier_image", "to_rgb",
           "standard_transforms", "random_affine", "COLOR_CORRELATION_SVD_SQRT"]

#: Square root of the ImageNet colour correlation matrix (lucid's, from its SVD).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])


def _normalized_color_matrix() -> torch.Tensor:
    m = COLOR_CORRELATION_SVD_SQRT
    return m / m.norm(dim=0).max()


def fourier_image(size: int, sd: float = 0.01, decay_power: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """A (1, 3, size, size) image parameterised by its 2-D real-FFT spectrum.

    Returns ``(spectrum, image_fn)``: ``spectrum`` (1, 3, size, size // 2 + 1, 2) is the
    leaf tensor to optimise (normal(0, sd) at first); ``image_fn()`` is the image in the
    decorrelated colour space, ``irfft2(spectrum * scale) / 4`` with
    ``scale = 1 / max(|f|, 1 / size) ** decay_power`` (low frequencies move first)."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    freqs = torch.sqrt(fx * fx + fy * fy)
    scale = (1.0 / torch.clamp(freqs, min=1.0 / size) ** decay_power).view(1, 1, size, size // 2 + 1, 1)
    spectrum = (torch.randn(1, 3, size, size // 2 + 1, 2, generator=generator) * sd).requires_grad_(True)

    def image_fn() -> torch.Tensor:
        coeffs = torch.view_as_complex((spectrum * scale).contiguous())
        return torch.fft.irfft2(coeffs, s=(size, size), norm="ortho") / 4.0

    return spectrum, image_fn


def to_rgb(t: torch.Tensor, decorrelate: bool = True) -> torch.Tensor:
    """(N, 3, H, W) from the decorrelated colour space to RGB in (0, 1):
    ``sigmoid(C t)`` with ``C`` the normalised :data:`COLOR_CORRELATION_SVD_SQRT`."""
    if decorrelate:
        c = _normalized_color_matrix().to(t.device, t.dtype)
        t = torch.einsum("ij,njhw->nihw", c, t)
    return torch.sigmoid(t)


def random_affine(x: torch.Tensor, scale: float, degrees: float, dx: float = 0.0, dy: float = 0.0,
                  padding_mode: str = "reflection") -> torch.Tensor:
    """Zoom by ``scale`` (> 1 enlarges), rotate by ``degrees`` and shift by ``(dx, dy)``
    (fractions of the half-width) about the centre; bilinear resampling, same size."""
    a = math.radians(degrees)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    theta = torch.tensor([[cos, -sin, dx], [sin, cos, dy]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.unsqueeze(0).expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def standard_transforms(generator: torch.Generator | None = None, pad: int = 12, jitter: int = 8,
                        scales=tuple(1 + (i - 5) / 50 for i in range(11)), degrees=tuple(range(-10, 11)),
                        jitter_after: int = 4) -> Callable[[torch.Tensor], torch.Tensor]:
    """Lucid's standard transform chain as one function of an (N, 3, H, W) image in [0, 1]:
    pad ``pad`` pixels of grey, jitter by up to ``jitter`` pixels, scale by a random
    choice of ``scales``, rotate by a random choice of ``degrees``, jitter by up to
    ``jitter_after``. The random choices come from ``generator``."""
    def pick(seq):
        return seq[int(torch.randint(len(seq), (1,), generator=generator))]

    def crop_jitter(x: torch.Tensor, d: int) -> torch.Tensor:
        if d <= 0:
            return x
        ox, oy = (int(v) for v in torch.randint(0, d + 1, (2,), generator=generator))
        return x[:, :, oy:x.shape[2] - (d - oy), ox:x.shape[3] - (d - ox)]

    def apply(x: torch.Tensor) -> torch.Tensor:
        if pad:
            x = F.pad(x, (pad, pad, pad, pad), value=0.5)
        x = crop_jitter(x, jitter)
        x = random_affine(x, pick(scales), pick(degrees), padding_mode="border")
        return crop_jitter(x, jitter_after)

    return apply


def _normalizer(model: nn.Module):
    mean, std = getattr(model, "pixel_mean", None), getattr(model, "pixel_std", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(std, torch.Tensor):
        from ..imaging import SQUEEZENET_MEAN, SQUEEZENET_STD

        mean = torch.from_numpy(SQUEEZENET_MEAN).view(1, 3, 1, 1)
        std = torch.from_numpy(SQUEEZENET_STD).view(1, 3, 1, 1)
    return lambda x: (x - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype)


@torch.no_grad()
def transformed_probability(model: nn.Module, image: torch.Tensor, target: int, n: int = 32,
                            generator: torch.Generator | None = None, scale_range=(0.8, 1.2),
                            max_degrees: float = 10.0, max_shift: float = 0.1) -> float:
    """The target's mean softmax probability over ``n`` random views of ``image``
    ((1, 3, H, W) pixels in [0, 1]): each view zooms by a uniform factor in
    ``scale_range``, rotates by a uniform angle in +-``max_degrees`` and shifts by up to
    ``max_shift`` of the half-size (a random crop), with reflection at the borders. A
    picture that shows the class keeps its probability under such views; adversarial
    pixel patterns do not. Deterministic for a given ``generator`` (default seed 0)."""
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    normalize = _normalizer(model)
    views = []
    for _ in range(n):
        u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        s = scale_range[0] + (scale_range[1] - scale_range[0]) * u[0]
        views.append(random_affine(image, s, (2 * u[1] - 1) * max_degrees, (2 * u[2] - 1) * max_shift,
                                   (2 * u[3] - 1) * max_shift))
    with eval_mode(model):
        probs = torch.cat([model(normalize(v)).softmax(dim=1)[:, target] for v in views])
    return float(probs.mean())


@dataclass(frozen=True)
class FeatureVisualization:
    """The outcome of :func:`render_class`: ``image`` (1, 3, H, W) pixels in [0, 1];
    ``target``; ``probability`` (softmax of the untransformed image) and
    ``transformed_probability`` (:func:`transformed_probability`); ``predicted_class``;
    ``iterations``; ``objective`` per step (the target's logit on the transformed view)."""

    image: torch.Tensor
    target: int
    probability: float
    transformed_probability: float
    predicted_class: int
    iterations: int
    objective: list = field(default_factory=list, repr=False)


def render_class(target_y: int, model: nn.Module, *, size: int = 224, steps: int = 256,
                 learning_rate: float = 0.05, fourier: bool = True, decorrelate: bool = True,
                 transforms: bool = True, generator: torch.Generator | None = None,
                 callback: Callable[[int, torch.Tensor], None] | None = None) -> FeatureVisualization:
    """An image of class ``target_y`` that a person recognises (see the module doc).

    Maximises the target's unnormalised score of ``model`` (which takes images
    normalised with its ``pixel_mean`` / ``pixel_std``, else the SqueezeNet statistics)
    on a randomly transformed view of the image each step, with Adam (``learning_rate``)
    for ``steps`` steps. ``fourier`` / ``decorrelate`` / ``transforms`` switch the three
    techniques off one by one (all off is plain Adam on sigmoid pixels).
    ``generator`` seeds the start and the transforms (default seed 0), so the result is
    reproducible. ``callback(step, image)`` sees a copy of the pixel image."""
    fn = "render_class"
    if isinstance(target_y, torch.Tensor) and target_y.numel() == 1 and not target_y.is_floating_point():
        target_y = int(target_y)
    if not isinstance(target_y, numbers.Integral) or isinstance(target_y, bool):
        raise TypeError(f"{fn}: target_y must be an int class index, got {type(target_y).__name__}")
    target_y = int(target_y)
    for name, value, low in (("size", size, 16), ("steps", steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    check_learning_rate(learning_rate, fn)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    if fourier:
        param, image_fn = fourier_image(size, generator=generator)
    else:
        param = (torch.randn(1, 3, size, size, generator=generator) * 0.01).requires_grad_(True)
        image_fn = lambda: param  # noqa: E731
    normalize = _normalizer(model)
    transform = standard_transforms(generator) if transforms else (lambda x: x)

    def pixels() -> torch.Tensor:
        return to_rgb(image_fn(), decorrelate).to(device, dtype)

    opt = torch.optim.Adam([param], lr=learning_rate)
    history = []
    with eval_mode(model):
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            scores = model(normalize(transform(pixels())))
            if step == 0 and not 0 <= target_y < scores.shape[1]:
                raise ValueError(f"{fn}: target_y must be in [0, {scores.shape[1]}), got {target_y}")
            objective = scores[:, target_y].mean()
            (-objective).backward()
            opt.step()
            history.append(float(objective.detach()))
            if callback is not None:
                callback(step, pixels().detach().clone())
        with torch.no_grad():
            image = pixels().detach()
            probs = model(normalize(image)).softmax(dim=1)[0]
    if not 0 <= target_y < probs.numel():
        raise ValueError(f"{fn}: target_y must be in [0, {probs.numel()}), got {target_y}")
    return FeatureVisualization(image=image, target=target_y, probability=float(probs[target_y]),
                                transformed_probability=transformed_probability(model, image, target_y),
                                predicted_class=int(probs.argmax()), iterations=steps, objective=history)

