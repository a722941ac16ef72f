"""Images made by gradient ascent on a class score: fooling images (Szegedy et
al. 2014) and class visualizations (Simonyan et al. 2014, Yosinski et al. 2015).

Both work on preprocessed images (the units of ``model.preprocess``) and
take steps ``learning_rate * g / ||g||_2`` with ``g`` the gradient of the
objective with respect to the image (the norm over one whole image).

May import: ``a3ext._util``, ``a3ext.imaging``, ``a3ext.visualization._common``; outside
a3ext: matplotlib, torch.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .._util import in_notebook
from ._common import check_images, check_learning_rate, check_targets, eval_mode, pixel_bounds, pixel_scale

__all__ = [
    "FoolingResult",
    "FoolingError",
    "fool",
    "make_fooling_image",
    "make_fooling_images",
    "ClassVisualization",
    "visualize_class",
    "create_class_visualization",
    "gaussian_blur",
    "gaussian_kernel1d",
    "jitter",
]


# --------------------------------------------------------------------------- fooling images


@dataclass(frozen=True)
class FoolingResult:
    """The outcome of :func:`fool` for one image.

    ``image``: the fooling image (1, 3, H, W), a new tensor (the input is not
    modified). ``iterations``: gradient steps taken (0 when the input was
    already classified as the target). ``fooled``: whether ``image`` is
    classified as ``target``. ``original_class``/``original_probability``: the
    prediction on the input; ``final_class``/``target_probability``: on
    ``image``. ``linf``/``l2``: size of ``image - X`` in preprocessed units;
    ``linf_pixels``: the L-inf size in 0-255 pixel-intensity units (``None``
    for a model without ``pixel_std``).
    """

    image: torch.Tensor
    target: int
    iterations: int
    fooled: bool
    original_class: int
    original_probability: float
    final_class: int
    target_probability: float
    linf: float
    l2: float
    linf_pixels: float | None


class FoolingError(RuntimeError):
    """``fool`` / ``make_fooling_image`` ran ``max_iter`` steps without fooling the model;
    ``.result`` holds the last image and its prediction."""

    def __init__(self, message: str, result: FoolingResult):
        super().__init__(message)
        self.result = result


def make_fooling_images(X: torch.Tensor, target_y, model: nn.Module, learning_rate: float = 1.0,
                        max_iter: int = 100, raise_on_failure: bool = True) -> list[FoolingResult]:
    """:func:`fool` for a batch: ``X`` (N, 3, H, W), ``target_y`` N
    class indices. Each image is updated with its own normalised gradient and
    frozen as soon as it is classified as its target, so image i gets the same
    steps as ``fool(X[i:i+1], target_y[i], ...)`` (up to float
    rounding of batched convolutions); only unfooled images go through the model.
    Returns one :class:`FoolingResult` per image. With ``raise_on_failure`` a
    :class:`FoolingError` (about the first unfooled image) is raised if any
    image is not fooled after ``max_iter`` steps.
    """
    fn = "make_fooling_image"
    check_images(X, fn, model=model)
    target = check_targets(target_y, X.shape[0], fn, name="target_y")
    if not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"{fn}: max_iter must be a non-negative int, got {max_iter!r}")
    check_learning_rate(learning_rate, fn)
    n = X.shape[0]
    x0 = X.detach()
    xf = x0.clone()
    target_dev = target.to(x0.device)
    steps = [0] * n
    done = [False] * n
    first_probs = last_probs = None
    with eval_mode(model):
        active = torch.arange(n, device=x0.device)
        for it in range(max_iter + 1):
            x = xf[active].clone().requires_grad_(True)
            scores = model(x)
            if scores.dim() != 2 or scores.shape[0] != x.shape[0]:
                raise ValueError(f"{fn}: model must map (N, 3, H, W) to (N, C) scores, got {tuple(scores.shape)}")
            if it == 0:
                bad = [int(t) for t in target if not 0 <= int(t) < scores.shape[1]]
                if bad:
                    raise ValueError(f"{fn}: target_y must be in [0, {scores.shape[1]}), got {bad}")
                first_probs = scores.detach().softmax(dim=1)
                last_probs = first_probs.clone()
            else:
                last_probs[active] = scores.detach().softmax(dim=1)
            fooled_now = scores.detach().argmax(dim=1) == target_dev[active]
            for j, idx in enumerate(active.tolist()):
                if fooled_now[j]:
                    done[idx] = True
            keep = ~fooled_now
            if it == max_iter or not bool(keep.any()):
                break
            picked = scores.gather(1, target_dev[active].view(-1, 1))[keep].sum()
            (grad,) = torch.autograd.grad(picked, x)
            grad = grad[keep]
            norms = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny).view(-1, 1, 1, 1)
            still = active[keep]
            xf[still] = xf[still] + learning_rate * grad / norms
            for idx in still.tolist():
                steps[idx] += 1
            active = still
    scale = pixel_scale(model, x0)
    results = []
    for i in range(n):
        delta = xf[i:i + 1] - x0[i:i + 1]
        results.append(FoolingResult(
            image=xf[i:i + 1].clone(), target=int(target[i]), iterations=steps[i], fooled=done[i],
            original_class=int(first_probs[i].argmax()), original_probability=float(first_probs[i].max()),
            final_class=int(last_probs[i].argmax()), target_probability=float(last_probs[i, target[i]]),
            linf=float(delta.abs().max()), l2=float(delta.norm()),
            linf_pixels=float((delta * scale).abs().max()) if scale is not None else None))
    if raise_on_failure:
        for r in results:
            if not r.fooled:
                raise FoolingError(
                    f"{fn}: not fooled after max_iter={max_iter} steps of learning_rate={learning_rate}: "
                    f"the model predicts class {r.final_class} and gives target {r.target} probability "
                    f"{r.target_probability:.3g}; raise max_iter or learning_rate", r)
    return results


def fool(X: torch.Tensor, target_y: int, model: nn.Module, *, learning_rate: float = 1.0,
         max_iter: int = 100) -> FoolingResult:
    """A fooling image: ``X`` changed imperceptibly until ``model`` predicts ``target_y``.

    ``X``: one preprocessed image (1, 3, H, W) as made by ``model.preprocess``;
    it is never modified. Gradient ascent on the target's unnormalised score
    with steps ``learning_rate * g / ||g||_2`` (``g`` its gradient w.r.t. the
    image), checking the prediction before every step and stopping as soon as
    the model predicts ``target_y`` -- at most ``max_iter`` steps. No clamping to
    the pixel range, as in the assignment. Returns a :class:`FoolingResult`
    (``.image`` is the fooling image; ``.iterations``, ``.linf_pixels``, ... report the run);
    raises :class:`FoolingError` if the model is still not fooled after
    ``max_iter`` steps. :func:`make_fooling_image` is the assignment's form (returns
    the image only).
    """
    if isinstance(X, torch.Tensor) and X.dim() == 4 and X.shape[0] != 1:
        raise ValueError(f"make_fooling_image: X must be one image of shape (1, 3, H, W), got shape "
                         f"{tuple(X.shape)}; use make_fooling_images for a batch")
    check_images(X, "make_fooling_image", batch=1)
    if isinstance(target_y, torch.Tensor) and target_y.numel() == 1 and not target_y.is_floating_point():
        target_y = int(target_y)
    if isinstance(target_y, numbers.Integral) and not isinstance(target_y, bool):
        target_y = int(target_y)
    if not isinstance(target_y, int) or isinstance(target_y, bool):
        raise TypeError(f"make_fooling_image: target_y must be an int class index, got {type(target_y).__name__}")
    return make_fooling_images(X, [target_y], model, learning_rate, max_iter)[0]


def make_fooling_image(X: torch.Tensor, target_y: int, model: nn.Module, *, learning_rate: float = 1.0,
                       max_iter: int = 100) -> torch.Tensor:
    """The assignment's ``make_fooling_image(X, target_y, model)``: returns the fooling
    image ``X_fooling`` (1, 3, H, W), a new tensor that ``model`` classifies as
    ``target_y``. Gradient ascent with normalised steps of ``learning_rate`` (1, as the
    notebook suggests) until fooled; raises :class:`FoolingError` after ``max_iter``
    steps. :func:`fool` returns the same image with a report of the run."""
    return fool(X, target_y, model, learning_rate=learning_rate, max_iter=max_iter).image


# --------------------------------------------------------------------------- class visualization


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)``, as
    ``scipy.ndimage.gaussian_filter1d`` builds it."""
    if not sigma > 0:
        raise ValueError(f"gaussian_blur: sigma must be > 0, got {sigma!r}")
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _reflect_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Pad ``r`` samples on both sides of ``dim`` mirroring about the edge,
    edge sample included (``d c b a | a b c d | d c b a``, scipy's 'reflect')."""
    n = x.shape[dim]
    idx = torch.arange(-r, n + r, device=x.device)
    period = 2 * n
    idx = idx % period
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def gaussian_blur(X: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images over H and W, returning a new
    tensor; matches the assignment's ``blur_image`` (``scipy.ndimage.gaussian_filter1d``
    along axes 2 and 3 with mode 'reflect' and truncate 4)."""
    if X.dim() != 4:
        raise ValueError(f"gaussian_blur: X must be (N, C, H, W), got shape {tuple(X.shape)}")
    k = gaussian_kernel1d(sigma, dtype=X.dtype, device=X.device)
    r = (k.numel() - 1) // 2
    n, c, h, w = X.shape
    y = _reflect_pad(X, r, 2)
    y = F.conv2d(y.reshape(n * c, 1, h + 2 * r, w), k.view(1, 1, -1, 1)).reshape(n, c, h, w)
    y = _reflect_pad(y, r, 3)
    return F.conv2d(y.reshape(n * c, 1, h, w + 2 * r), k.view(1, 1, 1, -1)).reshape(n, c, h, w)


def jitter(X: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """Roll (N, C, H, W) images ``ox`` pixels along W and ``oy`` along H (the
    assignment's ``jitter``); ``jitter(jitter(X, ox, oy), -ox, -oy) == X``."""
    return torch.roll(X, shifts=(int(oy), int(ox)), dims=(2, 3))


@dataclass(frozen=True)
class ClassVisualization:
    """The outcome of :func:`visualize_class`.

    ``image``: (1, 3, H, W) preprocessed image; ``target``: the class;
    ``probability``: softmax probability the model gives ``target`` on
    ``image``; ``predicted_class``: its top class; ``iterations``: steps taken;
    ``snapshots``: ``(iteration, image)`` pairs taken at the ``show_every``
    points (first, every ``show_every``-th and last step).
    """

    image: torch.Tensor
    target: int
    probability: float
    predicted_class: int
    iterations: int
    snapshots: list = field(default_factory=list, repr=False)


def visualize_class(target_y: int, model: nn.Module, l2_reg: float = 1e-3,
                    learning_rate: float = 25, num_iterations: int = 100,
                    blur_every: int = 10, max_jitter: int = 16, show_every: int = 25,
                    generator: torch.Generator | None = None, size: int = 224,
                    callback: Callable[[int, torch.Tensor], None] | None = None,
                    blur_sigma: float = 0.5, *, bounds=None, dtype: torch.dtype | None = None
                    ) -> ClassVisualization:
    """An image the model classifies as ``target_y``, by regularised gradient ascent.

    Starts from ``torch.randn(1, 3, size, size)`` noise (drawn with
    ``generator``) and maximises ``s_y(I) - l2_reg * ||I||_2^2`` for
    ``num_iterations`` steps. Each step, as in the assignment: roll the image by
    random offsets ``ox, oy`` in ``[0, max_jitter]`` (drawn with ``generator``),
    take a step ``learning_rate * g / ||g||_2``, roll back, clamp to
    ``bounds`` (``(low, high)``, broadcastable to the image) or else
    ``model.pixel_range`` (skipped for a model without either), and every
    ``blur_every`` steps (t = 0, blur_every, ...) blur with a Gaussian of
    ``blur_sigma`` = 0.5 pixel. At step t = 0, every ``show_every``-th step and
    the last one, ``callback(t, image)`` is called with a copy of the (1, 3, H, W)
    image (e.g. to plot it) and the copy is kept in ``.snapshots``
    (``show_every=0`` disables both). The same ``generator`` state gives the
    same image. The defaults are the assignment's (tuned for SqueezeNet); they
    also reach p >= 0.9 on EfficientNet-Lite0 (see benchmarks/bench_visualization.py).
    ``dtype``: of the image (default: the model's parameters'). Returns a
    :class:`ClassVisualization`; :func:`create_class_visualization` is the
    assignment's form (returns a PIL image).
    """
    fn = "create_class_visualization"
    if isinstance(target_y, torch.Tensor) and target_y.numel() == 1 and not target_y.is_floating_point():
        target_y = int(target_y)
    if isinstance(target_y, numbers.Integral) and not isinstance(target_y, bool):
        target_y = int(target_y)
    if not isinstance(target_y, int) or isinstance(target_y, bool):
        raise TypeError(f"{fn}: target_y must be an int class index, got {type(target_y).__name__}")
    for name, value, low in (("num_iterations", num_iterations, 0), ("blur_every", blur_every, 1),
                             ("max_jitter", max_jitter, 0), ("show_every", show_every, 0), ("size", size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    check_learning_rate(learning_rate, fn)
    if not (isinstance(l2_reg, (int, float)) and l2_reg >= 0):
        raise ValueError(f"{fn}: l2_reg must be a number >= 0, got {l2_reg!r}")
    try:
        param = next(model.parameters())
        device = param.device
    except StopIteration:
        device, dtype_ = torch.device("cpu"), torch.float32
    else:
        dtype_ = param.dtype
    dtype = dtype or dtype_
    gen_device = generator.device if generator is not None else torch.device("cpu")
    img = torch.randn((1, 3, size, size), generator=generator, device=gen_device).to(device, dtype)
    if bounds is not None:
        bounds = tuple(torch.as_tensor(b).to(device, dtype) for b in bounds)
    else:
        bounds = pixel_bounds(model, img)
    snapshots = []
    with eval_mode(model):
        for t in range(num_iterations):
            ox, oy = torch.randint(0, max_jitter + 1, (2,), generator=generator, device=gen_device).tolist()
            x = jitter(img, ox, oy).requires_grad_(True)
            scores = model(x)
            if t == 0 and not 0 <= target_y < scores.shape[1]:
                raise ValueError(f"{fn}: target_y must be in [0, {scores.shape[1]}), got {target_y}")
            objective = scores[0, target_y] - l2_reg * (x * x).sum()
            (grad,) = torch.autograd.grad(objective, x)
            x = x.detach() + learning_rate * grad / grad.norm().clamp_min(torch.finfo(grad.dtype).tiny)
            img = jitter(x, -ox, -oy)
            if bounds is not None:
                img = torch.maximum(torch.minimum(img, bounds[1]), bounds[0])
            if t % blur_every == 0:
                img = gaussian_blur(img, blur_sigma)
            if show_every and (t == 0 or (t + 1) % show_every == 0 or t == num_iterations - 1):
                snapshots.append((t, img.clone()))
                if callback is not None:
                    callback(t, img.clone())
        with torch.no_grad():
            probs = model(img).softmax(dim=1)[0]
    if not 0 <= target_y < probs.numel():
        raise ValueError(f"{fn}: target_y must be in [0, {probs.numel()}), got {target_y}")
    return ClassVisualization(image=img, target=target_y, probability=float(probs[target_y]),
                              predicted_class=int(probs.argmax()), iterations=num_iterations,
                              snapshots=snapshots)


def _resolve_tensor_type(dtype, fn: str):
    """The notebook's ``dtype`` (``torch.FloatTensor``, ``torch.cuda.FloatTensor``, or a
    ``torch.dtype``) as ``(torch.dtype, device or None)``."""
    if dtype is None:
        return None, None
    if isinstance(dtype, torch.dtype):
        return dtype, None
    if isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, type):
        name = f"{dtype.__module__}.{dtype.__name__}"
    else:
        name = None
    table = {"FloatTensor": torch.float32, "DoubleTensor": torch.float64, "HalfTensor": torch.float16,
             "BFloat16Tensor": torch.bfloat16}
    if name:
        short = name.rsplit(".", 1)[-1]
        if short in table:
            return table[short], (torch.device("cuda") if ".cuda" in name else torch.device("cpu"))
    raise TypeError(f"{fn}: dtype must be a torch tensor type (torch.FloatTensor, torch.cuda.FloatTensor, ...) "
                    f"or a floating torch.dtype, got {dtype!r}")


def create_class_visualization(target_y, model: nn.Module, dtype=None, **kwargs):
    """The assignment's ``create_class_visualization(target_y, model, dtype, **kwargs)``:
    an image the model classifies as ``target_y``, returned as a PIL image.

    ``dtype``: the notebook's tensor type (``torch.FloatTensor``,
    ``torch.cuda.FloatTensor``) or a ``torch.dtype``; as in the notebook the model is
    converted with ``model.type(dtype)``. Keyword arguments (the notebook's defaults):
    ``l2_reg`` 1e-3, ``learning_rate`` 25, ``num_iterations`` 100, ``blur_every`` 10,
    ``max_jitter`` 16, ``show_every`` 25 (in a Jupyter kernel the image is shown at those
    steps, as the notebook does); and a3ext's: ``generator``, ``size``, ``callback``,
    ``blur_sigma``. The image is clamped to ``model.pixel_range`` when the model has one,
    else to the SqueezeNet range the assignment clamps to, and converted with
    ``model.deprocess`` when the model has one, else with the notebook's ``deprocess``
    (SqueezeNet statistics, min-max rescaled). :func:`visualize_class` returns the
    tensor and the run's report instead.
    """
    fn = "create_class_visualization"
    tdtype, device = _resolve_tensor_type(dtype, fn)
    if dtype is not None:
        model.type(dtype)
    unknown = set(kwargs) - {"l2_reg", "learning_rate", "num_iterations", "blur_every", "max_jitter",
                             "show_every", "generator", "size", "callback", "blur_sigma"}
    if unknown:
        raise TypeError(f"{fn}: unexpected keyword arguments {sorted(unknown)}")
    bounds = None
    if getattr(model, "pixel_range", None) is None:
        from ..imaging import SQUEEZENET_MEAN, SQUEEZENET_STD

        mean = torch.from_numpy(SQUEEZENET_MEAN).view(1, 3, 1, 1)
        std = torch.from_numpy(SQUEEZENET_STD).view(1, 3, 1, 1)
        bounds = ((0.0 - mean) / std, (1.0 - mean) / std)
    if kwargs.get("callback") is None and kwargs.get("show_every", 25) and in_notebook():
        kwargs["callback"] = _notebook_display(target_y, model, kwargs.get("num_iterations", 100))
    result = visualize_class(target_y, model, bounds=bounds, dtype=tdtype, **kwargs)
    return _to_pil(result.image, model)


def _to_pil(img: torch.Tensor, model: nn.Module):
    if callable(getattr(model, "deprocess", None)):
        return model.deprocess(img.detach().cpu().float())
    from ..imaging import deprocess

    return deprocess(img.detach().cpu().float())


def _notebook_display(target_y: int, model: nn.Module, num_iterations: int):
    def show(t: int, img: torch.Tensor) -> None:
        import matplotlib.pyplot as plt

        labels = getattr(model, "labels", None)
        name = labels[target_y] if labels else f"class {target_y}"
        plt.imshow(_to_pil(img, model))
        plt.title(f"{name}\nIteration {t + 1} / {num_iterations}")
        plt.gcf().set_size_inches(4, 4)
        plt.axis("off")
        plt.show()
    return show
