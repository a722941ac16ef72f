"""``a3ext visualize``: saliency maps, attributions, fooling images and class
visualizations as PNG figures.

    a3ext visualize saliency|smoothgrad|ig|gradcam --image NAME_OR_PATH [--image ...] --out FILE.png
    a3ext visualize fool --image NAME_OR_PATH --target CLASS --out FILE.png
    a3ext visualize classviz --target CLASS --out FILE.png [--iters 100]

Images are asset names (``a3ext assets list``) or image files; classes are
ImageNet indices or label names (``'tiger cat'``). ``--model efficientnet``
(the default, pretrained EfficientNet-Lite0) or ``--model squeezenet --weights
squeezenet1_1.pth`` (a torchvision-format state dict). A bad file (an image that is
not one, missing weights) is answered with one line naming it and exit status 2
(:mod:`a3ext._cli_util`).

May import: the visualization modules, :mod:`a3ext.assets`, :mod:`a3ext.models`,
:mod:`a3ext._util` and :mod:`a3ext._cli_util`; never the face (:mod:`a3ext.cli`).
"""
from __future__ import annotations

import contextlib
import sys

from .._cli_util import reading, user_errors
from .._util import cli_description, positive_float, positive_int

__all__ = ["register_cli"]

ATTRIBUTION_METHODS = ("saliency", "smoothgrad", "ig", "gradcam")


def _load_model(args):
    """The classifier chosen by ``--model``/``--weights``."""
    from .. import models

    if args.model == "squeezenet":
        if args.weights is None:
            print("a3ext visualize: warning: --model squeezenet without --weights uses random weights; "
                  "the pictures will not mean much", file=sys.stderr)
        with reading(args.weights, "--weights") if args.weights is not None else contextlib.nullcontext():
            return models.squeezenet1_1(weights=args.weights)
    if args.weights is None:
        return models.efficientnet_lite0(pretrained=True)
    model = models.efficientnet_lite0(pretrained=False)
    with reading(args.weights, "--weights"):
        models._load_state_dict(model, args.weights, "efficientnet_lite0")
    return model


def _name(labels, index: int) -> str:
    from .classes import short_label

    return f"{short_label(labels[index])} ({index})"


def _load_images(args, model):
    """``--image`` values -> (names, (N, 3, S, S) preprocessed batch)."""
    import torch

    from .. import assets

    xs = []
    for spec in args.image:
        with reading(spec, "--image"):
            img = assets.resolve_image(spec)
        xs.append(model.preprocess(img, size=args.size))
    return list(args.image), torch.cat(xs)


def _attribution(args) -> int:
    import numpy as np
    import torch

    from . import attribution as A
    from .classes import resolve_class
    from .render import Panel, overlay_heatmap, save_figure

    model = _load_model(args)
    labels = model.labels
    target = resolve_class(args.target, labels) if args.target is not None else None
    names, X = _load_images(args, model)
    with torch.no_grad():
        probs = model(X).softmax(dim=1)
    y = probs.argmax(dim=1) if target is None else torch.full((X.shape[0],), target, dtype=torch.int64)
    method = args.visualize_command
    extra = [""] * X.shape[0]
    if method == "saliency":
        maps, what = A.compute_saliency_maps(X, y, model), "saliency |ds/dx|"
    elif method == "smoothgrad":
        gen = torch.Generator().manual_seed(args.seed)
        maps = A.reduce_channels(A.smoothgrad(X, y, model, n_samples=args.samples, noise_level=args.noise,
                                              generator=gen), "absmax")
        what = f"SmoothGrad ({args.samples} x {args.noise:.0%} noise)"
    elif method == "ig":
        attr = A.integrated_gradients(X, y, model, baseline=args.baseline, n_steps=args.steps)
        delta, diff = A.completeness_delta(attr, X, y, model, baseline=args.baseline)
        maps = A.reduce_channels(attr, "abssum")
        what = f"Integrated Gradients ({args.steps} steps, {args.baseline} baseline)"
        extra = [f"\nsum {float(diff[i] + delta[i]):.2f} vs f(x)-f(b) {float(diff[i]):.2f}"
                 for i in range(X.shape[0])]
    else:
        layer = args.layer or A.default_gradcam_layer(model)
        maps, what = A.grad_cam(X, y, model, layer=layer), f"Grad-CAM @ {layer}"
    rows = []
    for i in range(X.shape[0]):
        photo = model.deprocess(X[i])
        top = int(probs[i].argmax())
        yi = int(y[i])
        heat = maps[i].detach().cpu().numpy()
        rows.append([
            Panel(photo, f"{names[i]}\npredicted {_name(labels, top)} p={float(probs[i, top]):.2f}"),
            Panel(heat, f"{what}\nfor {_name(labels, yi)} p={float(probs[i, yi]):.2f}" + extra[i],
                  cmap="inferno", colorbar=True, vmax=float(np.percentile(heat, 99.5)) or None),
            Panel(overlay_heatmap(photo, maps[i], cmap=args.cmap), "overlay"),
        ])
        print(f"{names[i]}: predicted {labels[top]!r} p={float(probs[i, top]):.3f}; "
              f"{method} for {labels[yi]!r}{extra[i].replace(chr(10), '; ')}")
    out = save_figure(rows, args.out, suptitle=f"{what} -- {type(model).__name__}")
    print(f"wrote {out}")
    return 0


def _fool(args) -> int:
    import numpy as np
    import torch

    from .classes import resolve_class
    from .render import Panel, save_figure
    from .synthesis import FoolingError, fool

    model = _load_model(args)
    labels = model.labels
    target = resolve_class(args.target, labels)
    if len(args.image) != 1:
        raise ValueError(f"--image: fool takes one image, got {len(args.image)}")
    names, X = _load_images(args, model)
    try:
        r = fool(X, target, model, learning_rate=args.lr, max_iter=args.max_iter)
        status = 0
    except FoolingError as exc:
        print(f"a3ext visualize fool: {exc}", file=sys.stderr)
        r, status = exc.result, 1
    diff = ((r.image - X) * model.pixel_std * 255.0)[0].permute(1, 2, 0).detach().cpu().numpy()
    magnified = np.clip(128.0 + 10.0 * diff, 0, 255).astype(np.uint8)
    rescaled = model.deprocess(r.image - X + 0.0, rescale=True)
    verdict = f"after {r.iterations} steps" if r.fooled else f"NOT fooled after {r.iterations} steps"
    row = [
        Panel(model.deprocess(X), f"original: {_name(labels, r.original_class)}\np={r.original_probability:.2f}"),
        Panel(model.deprocess(r.image), f"fooling image: {_name(labels, r.final_class)}\n"
              f"p={float(torch.softmax(model(r.image), 1)[0, r.final_class]):.2f}, {verdict}"),
        Panel(rescaled, "difference (min-max stretched)"),
        Panel(magnified, f"difference x10 (grey = 0)\nL-inf {r.linf_pixels:.1f}/255"),
    ]
    out = save_figure([row], args.out, suptitle=f"fooling {names[0]} into {labels[target]!r} "
                      f"-- {type(model).__name__}")
    print(f"{names[0]}: {labels[r.original_class]!r} -> {labels[r.final_class]!r} (target {labels[target]!r}, "
          f"p={r.target_probability:.3f}) {verdict}; L-inf {r.linf_pixels:.2f}/255, L2 {r.l2:.3f} "
          f"(preprocessed units)")
    print(f"wrote {out}")
    return status


def _classviz(args) -> int:
    import torch

    from .classes import resolve_class
    from .render import Panel, save_figure
    from .synthesis import visualize_class

    model = _load_model(args)
    labels = model.labels
    target = resolve_class(args.target, labels)
    params = dict(learning_rate=25.0, l2_reg=1e-3, num_iterations=100, blur_every=10, max_jitter=16)
    for key, value in (("learning_rate", args.lr), ("l2_reg", args.l2_reg), ("num_iterations", args.iters),
                       ("blur_every", args.blur_every), ("max_jitter", args.max_jitter)):
        if value is not None:
            params[key] = value
    gen = torch.Generator().manual_seed(args.seed)
    result = visualize_class(target, model, show_every=args.show_every, generator=gen,
                                        size=args.size, **params)
    panels = []
    with torch.no_grad():
        for t, img in result.snapshots:
            p = model(img).softmax(dim=1)[0]
            panels.append(Panel(model.deprocess(img), f"step {t + 1}: p={float(p[target]):.2f}\n"
                                f"top {_name(labels, int(p.argmax()))}"))
    if not panels:
        panels.append(Panel(model.deprocess(result.image), ""))
    panels[-1].title = (f"{_name(labels, target)}\np={result.probability:.3f} after {result.iterations} steps")
    rows = [panels[i:i + 5] for i in range(0, len(panels), 5)]
    suptitle = (f"class visualization of {labels[target]!r} -- {type(model).__name__}, "
                f"lr {params['learning_rate']:g}, l2 {params['l2_reg']:g}, seed {args.seed}")
    out = save_figure(rows, args.out, suptitle=suptitle)
    print(f"{labels[target]!r}: p={result.probability:.3f} (top class {labels[result.predicted_class]!r}) "
          f"after {result.iterations} steps")
    print(f"wrote {out}")
    return 0


def _run(command: str, handler):
    """``handler`` reporting bad input as one line and exit status 2 (:mod:`a3ext._cli_util`)."""
    return user_errors(f"a3ext visualize {command}", handler)


def _common(p, image: bool = True) -> None:
    if image:
        p.add_argument("--image", action="append", required=True, metavar="NAME_OR_PATH",
                       help="image asset name or image file (repeat for several)")
    p.add_argument("--model", choices=("efficientnet", "squeezenet"), default="efficientnet",
                   help="classifier (default efficientnet: pretrained EfficientNet-Lite0)")
    p.add_argument("--weights", metavar="PATH", help="state dict for --model (torchvision format for squeezenet)")
    p.add_argument("--size", type=positive_int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="PNG figure to write")


def register_cli(subparsers) -> None:
    """Add ``visualize`` (saliency, smoothgrad, ig, gradcam, fool, classviz) to an
    argparse subparsers object; each leaf sets ``func(args) -> int``."""
    parser = subparsers.add_parser("visualize", help="saliency maps, attributions, fooling images, class "
                                   "visualizations", description=cli_description(__doc__))
    sub = parser.add_subparsers(dest="visualize_command", required=True, metavar="COMMAND")
    helps = {"saliency": "saliency maps (|gradient|, max over channels)",
             "smoothgrad": "SmoothGrad: gradients averaged over noisy copies",
             "ig": "Integrated Gradients from a baseline image",
             "gradcam": "Grad-CAM on a layer"}
    for method in ATTRIBUTION_METHODS:
        p = sub.add_parser(method, help=helps[method], description=helps[method])
        _common(p)
        p.add_argument("--target", metavar="CLASS",
                       help="class to explain (index or name; default: each image's top prediction)")
        p.add_argument("--cmap", default="jet", help="matplotlib colormap of the overlay (default jet)")
        if method == "smoothgrad":
            p.add_argument("--samples", type=positive_int, default=25, help="noisy copies (default 25)")
            p.add_argument("--noise", type=positive_float, default=0.15,
                           help="noise std as a fraction of the image's value range (default 0.15)")
            p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
        if method == "ig":
            p.add_argument("--steps", type=positive_int, default=64, help="Gauss-Legendre nodes (default 64)")
            p.add_argument("--baseline", choices=("mean", "black", "white"), default="black",
                           help="baseline image (default black)")
        if method == "gradcam":
            p.add_argument("--layer", help="module name, e.g. _bn1, _blocks.15, features.12 "
                           "(default: the last feature map)")
        p.set_defaults(func=_run(method, _attribution))
    p = sub.add_parser("fool", help="fooling image: imperceptible change to another class",
                       description="fooling image: original, fooling image, differences, both predictions")
    _common(p)
    p.add_argument("--target", required=True, metavar="CLASS", help="class to fool the model into")
    p.add_argument("--lr", type=positive_float, default=1.0, help="step size (L2 norm per step; default 1)")
    p.add_argument("--max-iter", type=positive_int, default=100, help="most steps (default 100)")
    p.set_defaults(func=_run("fool", _fool))
    p = sub.add_parser("classviz", help="class visualization from noise",
                       description="class visualization: gradient ascent on a class score from noise")
    _common(p, image=False)
    p.add_argument("--target", required=True, metavar="CLASS", help="class to visualise (index or name)")
    p.add_argument("--iters", type=positive_int, default=None, help="steps (default 100)")
    p.add_argument("--lr", type=positive_float, default=None, help="step size (default 25)")
    p.add_argument("--l2-reg", type=float, default=None, help="L2 penalty (default 1e-3)")
    p.add_argument("--blur-every", type=positive_int, default=None, help="blur period (default 10)")
    p.add_argument("--max-jitter", type=int, default=None, help="largest jitter in pixels (default 16)")
    p.add_argument("--show-every", type=positive_int, default=25, help="snapshot period (default 25)")
    p.add_argument("--seed", type=int, default=0, help="noise and jitter seed (default 0)")
    p.set_defaults(func=_run("classviz", _classviz))
