"""``a3ext style``: style transfer, feature inversion and texture synthesis from the
command line, writing the side-by-side figure (and optionally the bare result).

May import: torch, :mod:`a3ext.assets`, :mod:`a3ext.models`, :mod:`a3ext._util`,
:mod:`a3ext._cli_util` and every other style module; nothing imports it but the
package's ``__init__`` (for ``register_cli``) and the face, :mod:`a3ext.cli`.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys

import torch

from .. import assets, models
from .._cli_util import reading, user_errors
from .._util import nonnegative_float, positive_float, positive_int
from .figures import save_comparison
from .features import default_cnn
from .presets import PRESETS, preset_arguments
from .settings import backbone_settings
from .transfer import style_transfer

__all__ = ["register_cli"]


def _float_list(text: str) -> list[float]:
    import argparse

    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative numbers separated by commas, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    import argparse

    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _open_image(spec, what: str):
    """An image given on the command line (asset name or file) as a PIL image; a
    preprocessed tensor or PIL image passes through."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    with reading(spec, what):
        return assets.resolve_image(spec)


def _run(args) -> int:
    """``a3ext style``: returns the exit status."""
    import json

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model
    if model == "auto":
        model = "squeezenet" if args.weights else "efficientnet"
    if model == "squeezenet":
        if not args.weights:
            print("a3ext style: warning: --model squeezenet without --weights uses a randomly initialised "
                  "SqueezeNet (no pretrained SqueezeNet ships offline)", file=sys.stderr)
        with reading(args.weights, "--weights") if args.weights else contextlib.nullcontext():
            cnn = models.squeezenet1_1(weights=args.weights)
    else:
        if args.weights:
            raise ValueError("--weights is for --model squeezenet; EfficientNet-Lite0 uses its embedded weights")
        cnn = default_cnn()
    if args.preset:
        kwargs = preset_arguments(args.preset, cnn)
    else:
        if not args.content or not args.style:
            raise ValueError("expected --content and --style (or --preset NAME)")
        s = backbone_settings(cnn)
        kwargs = dict(image_size=args.size or 192, style_size=args.style_size or args.size or 192,
                      content_layer=s.content_layer, content_weight=s.content_weight,
                      style_layers=list(s.style_layers), style_weights=list(s.style_weights),
                      tv_weight=s.tv_weight, init_random=False)
    if args.content:
        kwargs["content_image"] = args.content
    if args.style:
        kwargs["style_image"] = args.style if len(args.style) > 1 else args.style[0]
    if args.size:
        if args.preset and not args.style_size:
            kwargs["style_size"] = max(1, round(kwargs["style_size"] * args.size / kwargs["image_size"]))
        kwargs["image_size"] = args.size
    if args.style_size:
        kwargs["style_size"] = args.style_size
    for name in ("content_layer", "content_weight", "style_layers", "style_weights", "tv_weight",
                 "softmax_temperature"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.plain_gram:
        kwargs["softmax_temperature"] = None
    if args.init is not None:
        kwargs["init_random"] = args.init == "random"
    if args.style_blend:
        kwargs["style_blend_weights"] = [w for chunk in args.style_blend for w in chunk]
    content_spec, style_specs = kwargs["content_image"], kwargs["style_image"]
    style_specs = style_specs if isinstance(style_specs, list) else [style_specs]
    # read the images here, so that a bad file is reported naming its option
    kwargs["content_image"] = _open_image(content_spec, "--content")
    opened = [_open_image(spec, "--style") for spec in style_specs]
    kwargs["style_image"] = opened if len(opened) > 1 else opened[0]
    result = style_transfer(cnn=cnn, optimizer=args.optimizer, num_iterations=args.iters,
                            preserve_color=args.preserve_color, seed=args.seed, progress=not args.no_progress,
                            **kwargs)
    style_names = [os.path.basename(str(spec)) for spec in style_specs]
    title = ("style transfer" + (f" -- preset {args.preset}" if args.preset else "")
             + f" (final loss {result.history['total'][-1]:.4g})")
    out = save_comparison(result, args.out, cnn, content_name=os.path.basename(str(content_spec)),
                          style_names=style_names, title=title)
    if args.result:
        os.makedirs(os.path.dirname(os.path.abspath(args.result)), exist_ok=True)
        result.pil.save(args.result)
    summary = {"out": out, "result": args.result, "final_loss": result.history["total"][-1],
               "settings": result.settings}
    print(json.dumps(summary, indent=None, default=str))
    return 0


def register_cli(subparsers) -> None:
    """Add ``style`` to an argparse subparsers object (``set_defaults(func=...)``, the
    function returns the exit status)."""
    p = subparsers.add_parser(
        "style", help="neural style transfer, feature inversion, texture synthesis",
        description="Neural style transfer (Gatys et al.) on EfficientNet-Lite0 (default) or SqueezeNet 1.1 "
                    "(with --weights). Writes a PNG with content, style(s) and result side by side. Presets: "
                    + ", ".join(f"{k} ({v.content} + {v.style})" for k, v in PRESETS.items()) + ".")
    p.add_argument("--content", metavar="NAME_OR_PATH", help="content image: asset name or image file")
    p.add_argument("--style", action="append", metavar="NAME_OR_PATH",
                   help="style image: asset name or image file (repeat to blend several)")
    p.add_argument("--style-blend", action="append", type=_float_list, metavar="W[,W...]",
                   help="blend weights of the style images (one per --style; normalised to sum 1)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="PNG figure to write (content | style | result)")
    p.add_argument("--result", metavar="FILE.png", help="also write the bare result image here")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named run (images, sizes, weights)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="content image shorter side in pixels (default 192 or the preset's)")
    p.add_argument("--style-size", type=positive_int, default=None, help="style image shorter side "
                   "(default: --size, or the preset's)")
    p.add_argument("--iters", type=positive_int, default=200, help="iterations / function evaluations (default 200)")
    p.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam",
                   help="adam: the assignment's schedule (default); lbfgs: L-BFGS as in neural-style")
    p.add_argument("--preserve-color", action="store_true",
                   help="luminance-only transfer: keep the content image's colours")
    p.add_argument("--init", choices=("content", "random"), default=None,
                   help="start from the content image or from noise (default: content, or the preset's)")
    p.add_argument("--model", choices=("auto", "efficientnet", "squeezenet"), default="auto",
                   help="backbone (default auto: squeezenet if --weights is given, else EfficientNet-Lite0)")
    p.add_argument("--weights", metavar="PATH", help="torchvision SqueezeNet 1.1 state dict")
    p.add_argument("--content-layer", type=int, default=None, help="feature-map index of the content loss")
    p.add_argument("--content-weight", type=nonnegative_float, default=None, help="content loss weight")
    p.add_argument("--style-layers", type=_int_list, default=None, metavar="L[,L...]", help="style layer indices")
    p.add_argument("--style-weights", type=_float_list, default=None, metavar="W[,W...]",
                   help="style loss weights, one per style layer")
    p.add_argument("--tv-weight", type=nonnegative_float, default=None, help="total-variation weight")
    gram = p.add_mutually_exclusive_group()
    gram.add_argument("--softmax-temperature", type=positive_float, default=None,
                      help="softmax-transform the style features before the Gram matrix (Wang et al. 2021)")
    gram.add_argument("--plain-gram", action="store_true", help="no softmax transform (plain Gram matrices)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random start (default 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op CPU threads (default: torch's; 1 is much faster on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=user_errors("a3ext style", _run))
