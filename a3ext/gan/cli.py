"""``a3ext gan``: train GANs on real digits, draw samples, score them, and run the
semi-supervised GAN classifier.

    a3ext gan train --kind vanilla|ls|dc|wgangp --data mnist5k|fashion|IDX_DIR --epochs N --out DIR
    a3ext gan sample --checkpoint DIR/checkpoint.pt --n 64 --out grid.png
    a3ext gan score --checkpoint DIR/checkpoint.pt --data mnist5k
    a3ext gan semisup --labels-per-class 10 --data mnist5k --epochs 60

``train`` under ``torchrun --nproc_per_node K`` trains data-parallel (DDP, gloo on CPU).
A bad file (a missing or corrupt checkpoint, a missing data directory) is answered with
one line naming it and exit status 2 (:mod:`a3ext._cli_util`).

May import: the GAN modules, :mod:`a3ext._util` and :mod:`a3ext._cli_util`; never the
face (:mod:`a3ext.cli`), which calls :func:`register_cli`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .._cli_util import UserInputError, reading, standalone_main, user_errors
from .._util import cli_description, positive_float, positive_int, torchrun_process_group

__all__ = ["register_cli", "main"]


def _set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _load_data(args):
    """``--data`` as :class:`a3ext.datasets.Splits` (a bad one: one line naming it)."""
    from .data import load_digits

    with reading(args.data, "--data"):
        return load_digits(args.data, seed=args.split_seed)


def _load_generator(args):
    """``--checkpoint``'s generator and config (a bad file: one line naming it)."""
    from .train import load_generator

    with reading(args.checkpoint, "--checkpoint"):
        return load_generator(args.checkpoint)


def _cmd_train(args) -> int:
    import torch
    import torch.distributed as dist

    from .train import KINDS, train_gan

    if args.kind not in KINDS:  # argparse choices already check; kept for programmatic use
        raise UserInputError(f"unknown --kind {args.kind!r}; expected one of {', '.join(KINDS)}")
    _set_threads(args)
    with torchrun_process_group() as world:
        splits = _load_data(args)
        trainer = train_gan(
            args.kind, splits.train.images, labels=splits.train.labels, num_epochs=args.epochs,
            batch_size=args.batch_size, noise_dim=args.noise_dim, seed=args.seed, out_dir=args.out,
            resume=args.resume, show_every=args.show_every, sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every, critic_steps=args.critic_steps,
            gradient_penalty_weight=args.gp_weight, lr=args.lr, ema_decay=args.ema_decay, recipe=args.recipe,
            max_iterations=args.max_iterations,
            progress=not args.no_progress, log="tqdm" if not args.quiet else None,
            distributed=world > 1)
        rank = dist.get_rank() if dist.is_initialized() else 0
        if rank == 0:
            out = Path(args.out)
            summary = {"kind": args.kind, "data": args.data, "iterations": trainer.iteration,
                       "epochs": trainer.epoch, "world_size": world,
                       "final_d_loss": trainer.history["d_loss"][-1] if trainer.history["d_loss"] else None,
                       "final_g_loss": trainer.history["g_loss"][-1] if trainer.history["g_loss"] else None,
                       "checkpoint": str(out / "checkpoint.pt"), "samples": str(out / "samples_final.png"),
                       "losses": str(out / "losses.png")}
            if args.eval:
                from .metrics import quality_model
                from .train import generate
                quality, _ = quality_model(args.data, seed=args.split_seed)
                heldout = torch.cat([splits.val.images, splits.test.images])[:args.eval_n]
                summary["quality"] = quality.score(
                    generate(trainer.sampler, args.eval_n, args.noise_dim, seed=args.seed))
                summary["quality_floor_heldout_real"] = quality.floor(heldout)
                summary["quality_note"] = ("this project's own metric (small digit CNN), not comparable "
                                           "to Inception FID")
                (out / "quality.json").write_text(json.dumps(summary["quality"], indent=2))
            if not args.quiet:
                _print_json(summary)
    return 0


def _cmd_sample(args) -> int:
    from .train import generate, save_image_grid

    G, config = _load_generator(args)
    images = generate(G, args.n, config["noise_size"], seed=args.seed)
    path = save_image_grid(images, args.out, nrow=args.nrow)
    if not args.quiet:
        print(f"{args.n} samples of a {config['kind']} GAN -> {path}")
    return 0


def _cmd_score(args) -> int:
    import torch

    from .metrics import quality_model
    from .train import generate

    _set_threads(args)
    G, config = _load_generator(args)
    _load_data(args)  # a bad --data is named before the quality classifier is trained
    quality, splits = quality_model(args.data, seed=args.split_seed)
    heldout = torch.cat([splits.val.images, splits.test.images])[:args.n]
    _print_json({"kind": config["kind"], "generated": quality.score(generate(G, args.n, config["noise_size"],
                                                                             seed=args.seed)),
                 "heldout_real_floor": quality.floor(heldout),
                 "classifier_val_accuracy": quality.info.get("val_accuracy"),
                 "note": "this project's own metric (small digit CNN), not comparable to Inception FID"})
    return 0


def _cmd_semisup(args) -> int:
    from .semi_supervised import run_semi_supervised

    _set_threads(args)
    _load_data(args)  # a bad --data is named before anything is trained
    result = run_semi_supervised(args.data, args.labels_per_class, epochs=args.epochs,
                                 batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 split_seed=args.split_seed, progress=not args.no_progress,
                                 out_dir=args.out)
    print(result.summary())
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "semisup.json").write_text(json.dumps({
            "gan_accuracy": result.gan_accuracy, "baseline_accuracy": result.baseline_accuracy,
            "labels_per_class": result.labels_per_class, "num_labeled": result.num_labeled,
            "num_unlabeled": result.num_unlabeled, "num_test": result.num_test,
            "epochs": result.epochs, "seed": result.seed, "data": args.data}, indent=2))
    return 0


def register_cli(subparsers) -> None:
    """Add the ``gan`` command (``train``, ``sample``, ``score``, ``semisup``) to an
    argparse subparsers object. Each leaf parser sets ``func(args) -> int``."""
    from .train import KINDS

    parser = subparsers.add_parser("gan", help="train GANs on real digits, sample, score, semi-supervised",
                                   description=cli_description(__doc__))
    sub = parser.add_subparsers(dest="gan_command", required=True, metavar="COMMAND")

    data_help = "mnist5k (5,000 real MNIST digits), fashion (Fashion-MNIST) or a directory of IDX files"
    p = sub.add_parser("train", help="train a GAN; writes samples, loss curves and checkpoints to --out")
    p.add_argument("--kind", choices=KINDS, default="dc", help="GAN kind (default: dc)")
    p.add_argument("--data", default="mnist5k", help=data_help + " (default: mnist5k)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs over the training split (default 10)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--noise-dim", type=positive_int, default=96)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, noise and batch order")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--show-every", type=positive_int, default=250, help="log every N iterations")
    p.add_argument("--sample-every", type=positive_int, default=None,
                   help="save a sample grid every N iterations (default: --show-every)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="write checkpoint.pt every N iterations (always at the end)")
    p.add_argument("--recipe", choices=("assignment", "fast"), default="assignment",
                   help="default settings: the assignment's (default) or 'fast' (moving average of G for the "
                        "MLP GANs; WGAN-GP with one critic step, lr 5e-4, betas (0.5, 0.9)); see a3ext.gan.RECIPES")
    p.add_argument("--critic-steps", type=positive_int, default=None,
                   help="discriminator steps per generator step (default: from --recipe; assignment: 1, wgangp 5)")
    p.add_argument("--gp-weight", type=float, default=None, help="gradient-penalty weight (wgangp default 10)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="Adam learning rate (default: from --recipe; assignment: 1e-3, wgangp 1e-4)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="sample from a moving average of G's weights with this decay (default: from --recipe; "
                        "0 = off)")
    p.add_argument("--max-iterations", type=positive_int, default=None, help="stop after N iterations in all")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt if it exists")
    p.add_argument("--eval", action="store_true",
                   help="score samples with the project's digit-classifier metric at the end")
    p.add_argument("--eval-n", type=positive_int, default=1000, help="images scored by --eval (default 1000)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="no log lines or summary")
    p.set_defaults(func=user_errors("a3ext gan train", _cmd_train))

    p = sub.add_parser("sample", help="draw a grid of samples from a checkpoint's generator")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `a3ext gan train`")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples (default 64)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--nrow", type=positive_int, default=8, help="images per grid row (default 8)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=user_errors("a3ext gan sample", _cmd_sample))

    p = sub.add_parser("score", help="quality of a checkpoint's samples (own digit-CNN metric) vs held-out real")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default="mnist5k", help=data_help)
    p.add_argument("--n", type=positive_int, default=1000, help="samples scored (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=user_errors("a3ext gan score", _cmd_score))

    p = sub.add_parser(
        "semisup", help="semi-supervised GAN classifier vs supervised-only baseline",
        description="Train Salimans et al.'s (K+1)-class discriminator with a feature-matching generator on "
                    "a few labeled training images plus all of them unlabeled, then the same network on the "
                    "labeled images alone for the same number of steps, and print both test accuracies. "
                    "On mnist5k with 10 labels per class: about 90-93 % vs 78-79 % after 60 epochs (2-3 min), "
                    "95 % after 300; below ~40 epochs the lead is smaller and varies with the seed.")
    p.add_argument("--labels-per-class", type=positive_int, default=10,
                   help="labeled training images per class (default 10)")
    p.add_argument("--data", default="mnist5k", help=data_help + " (default: mnist5k)")
    p.add_argument("--epochs", type=positive_int, default=60,
                   help="passes over the unlabeled training images (default 60)")
    p.add_argument("--batch-size", type=positive_int, default=100,
                   help="images per batch of each kind (labeled, unlabeled, generated); a step is one "
                        "discriminator and one generator update on such batches (default 100)")
    p.add_argument("--lr", type=positive_float, default=3e-3,
                   help="Adam learning rate, decayed linearly to 0 over the second half (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the labeled subset, initialisation and noise")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument("--out", default=None, help="directory for semisup.json and a sample grid")
    p.add_argument("--threads", type=positive_int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=user_errors("a3ext gan semisup", _cmd_semisup))


def main(argv=None) -> int:
    """Stand-alone entry point (``python -m a3ext.gan.cli train ...``), also what
    ``torchrun -m a3ext.gan.cli`` runs."""
    return standalone_main(register_cli, ["gan", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
