"""``a3ext caption ...``: make the embedded dataset, train, sample, evaluate.

    a3ext caption make-dataset --out DIR [--num-train 10000 --num-val 300 --features auto|efficientnet|pixels]
    a3ext caption train --data DIR [--make-embedded] [--cell lstm] [solver options] --checkpoint-dir CK
    a3ext caption sample --checkpoint CK/checkpoint.pt --data DIR [--split val --num 5]
    a3ext caption sample --checkpoint CK/checkpoint.pt --data DIR --image scene.png [--out captioned.png]
    a3ext caption sample --checkpoint CK/checkpoint.pt --data DIR --scene-seed 7 --out captioned.png
    a3ext caption eval --checkpoint CK/checkpoint.pt --data DIR [--split val --beam-size 3]

``--data`` is a directory in the assignment's COCO layout (the real
``coco_captioning`` folder, or one written by ``make-dataset``). A bad file or directory
is answered with one line naming it and exit status 2 (:mod:`a3ext._cli_util`).

May import: the captioning modules, :mod:`a3ext._util` and :mod:`a3ext._cli_util`; never
the face (:mod:`a3ext.cli`), which calls :func:`register_cli`. ``python -m
a3ext.captioning.cli caption ...`` (what ``torchrun -m`` runs) parses with this part's
subcommands only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .._cli_util import reading, standalone_main, user_errors
from .._util import cli_description, nonnegative_int, positive_float, positive_int, torchrun_process_group

__all__ = ["register_cli"]


def _make_dataset(args) -> int:
    from .synthetic import make_dataset

    meta = make_dataset(args.out, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
                        features=args.features, image_size=args.image_size, pca_dim=args.pca_dim,
                        save_images=not args.no_images, verbose=True)
    print(json.dumps(meta["seconds"]))
    return 0


def _ensure_data(args):
    from .data import CAPTION_FILE, load_coco_data

    base = Path(args.data)
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized()
    main_rank = not distributed or dist.get_rank() == 0
    if main_rank and not (base / CAPTION_FILE).is_file() and getattr(args, "make_embedded", False):
        from .synthetic import make_dataset

        print(f"generating the embedded dataset in {base}", file=sys.stderr)
        make_dataset(base, seed=args.seed, verbose=True)
    if distributed:
        dist.barrier()  # the other ranks read what rank 0 generated
    import numpy as np

    with reading(base, "--data"):
        return load_coco_data(base, max_train=getattr(args, "max_train", None),
                              pca_features=not getattr(args, "no_pca", False),
                              rng=np.random.RandomState(args.seed))


def _train(args) -> int:
    """Single-process, or data-parallel under ``torchrun`` (``WORLD_SIZE`` > 1: gloo
    process group; only rank 0 prints and writes checkpoints)."""
    with torchrun_process_group():
        return _train_body(args)


def _train_body(args) -> int:
    import torch

    from .model import CaptioningRNN
    from .solver import CaptioningSolver

    data = _ensure_data(args)
    torch.manual_seed(args.seed)
    model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                          wordvec_dim=args.wordvec_dim, hidden_dim=args.hidden_dim, cell_type=args.cell,
                          dtype=getattr(torch, args.dtype))
    solver = CaptioningSolver(
        model, data, update_rule=args.update_rule, optim_config={"learning_rate": args.lr},
        lr_decay=args.lr_decay, batch_size=args.batch_size, num_epochs=args.num_epochs,
        print_every=args.print_every, verbose=not args.quiet, progress=not args.no_progress and not args.quiet,
        seed=args.seed, eval_bleu=not args.no_bleu, num_val_images=args.num_val_images,
        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every, resume_from=args.resume,
        grad_clip=args.grad_clip)
    solver.train(max_seconds=args.max_seconds)
    summary = {"iterations": solver.t, "epochs": solver.epoch, "final_loss": solver.loss_history[-1] if solver.loss_history else None,
               "train_seconds": round(solver.train_seconds, 2),
               # the BLEU of the model written last, null when it was not scored (--no-bleu on
               # resume, --max-seconds mid-epoch: an earlier score would pass for this model's)
               "val_bleu": (solver.val_bleu_history[-1] if solver.val_bleu_history
                            and solver.val_bleu_history[-1].get("iteration") == solver.t else None),
               "checkpoint": str(Path(args.checkpoint_dir) / "checkpoint.pt"), "world_size": solver.world_size}
    if solver.is_main:
        print(json.dumps(summary))
    return 0


def _caption_image(img, text: str, chars_per_line: int = 40):
    """The image with its caption written below it (PIL's default bitmap font)."""
    import textwrap

    from PIL import Image, ImageDraw

    lines = textwrap.wrap(text, chars_per_line) or [""]
    w, h = img.size
    width = max(w, 6 * max(len(ln) for ln in lines) + 8)
    canvas = Image.new("RGB", (width, h + 14 * len(lines) + 8), (255, 255, 255))
    canvas.paste(img, ((width - w) // 2, 0))
    d = ImageDraw.Draw(canvas)
    for i, ln in enumerate(lines):
        d.text((4, h + 4 + 14 * i), ln, fill=(0, 0, 0))
    return canvas


def _decode(model, feats, beam_size, max_length):
    if beam_size > 1:
        return model.beam_search(feats, beam_size=beam_size, max_length=max_length)
    return model.sample(feats, max_length=max_length)


def _sample(args) -> int:
    import numpy as np
    import torch

    from .data import decode_captions
    from .solver import model_from_checkpoint

    with reading(args.checkpoint, "--checkpoint"):
        model = model_from_checkpoint(args.checkpoint)
    idx_to_word = model.idx_to_word
    if args.image or args.scene_seed is not None:
        from PIL import Image

        from .synthetic import image_features, render_scene, sample_scene, scene_captions

        if args.image:
            with reading(args.image, "--image"), Image.open(args.image) as opened:
                img = opened.convert("RGB")
        else:
            objs = sample_scene(np.random.RandomState(args.scene_seed), args.split)
            img = render_scene(objs)
            print("reference: " + " | ".join(scene_captions(objs)))
        with reading(args.data, "--data"):
            feats = torch.from_numpy(image_features(args.data, [img]))
        text = decode_captions(_decode(model, feats, args.beam_size, args.max_length).numpy()[0], idx_to_word)
        text = text.replace("<START>", "").replace("<END>", "").strip()
        print(text)
        if args.out:
            _caption_image(img, text).save(args.out)
            print(f"wrote {args.out}")
        return 0
    data = _ensure_data(args)
    rng = np.random.RandomState(args.seed)
    split = args.split
    n_cap = data[f"{split}_captions"].shape[0]
    rows = rng.choice(n_cap, min(args.num, n_cap), replace=False)
    img_idx = data[f"{split}_image_idxs"][rows]
    feats = torch.as_tensor(data[f"{split}_features"][img_idx])
    out = _decode(model, feats, args.beam_size, args.max_length).numpy()
    gt = decode_captions(data[f"{split}_captions"][rows], data["idx_to_word"])
    for pred, truth, url in zip(decode_captions(out, idx_to_word), gt, data[f"{split}_urls"][img_idx]):
        print(f"{url}\n  sample: {pred}\n  GT:     {truth}")
    return 0


def _eval(args) -> int:
    from .solver import evaluate_bleu, model_from_checkpoint

    with reading(args.checkpoint, "--checkpoint"):
        model = model_from_checkpoint(args.checkpoint)
    data = _ensure_data(args)
    s = args.split
    scores = evaluate_bleu(model, data[f"{s}_captions"], data[f"{s}_image_idxs"], data[f"{s}_features"],
                           data["idx_to_word"], num_images=args.num_images, beam_size=args.beam_size,
                           max_length=args.max_length)
    scores["split"] = s
    print(json.dumps(scores))
    return 0


def _command(command: str, handler):
    """``handler`` reporting bad input as one line and exit status 2 (:mod:`a3ext._cli_util`)."""
    return user_errors(f"a3ext caption {command}", handler)


def register_cli(subparsers) -> None:
    """Add ``caption`` (make-dataset, train, sample, eval) to the ``a3ext`` parser."""
    p = subparsers.add_parser("caption", help="image captioning: embedded dataset, training, sampling, BLEU",
                              description=cli_description(__doc__))
    sub = p.add_subparsers(dest="caption_command", metavar="CAPTION_COMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    m = sub.add_parser("make-dataset", help="generate the embedded (synthetic scenes) dataset in the COCO layout")
    m.add_argument("--out", required=True, help="output directory")
    m.add_argument("--num-train", type=positive_int, default=10000, help="training images (3 captions each; default 10000)")
    m.add_argument("--num-val", type=positive_int, default=300, help="validation images (default 300)")
    m.add_argument("--seed", type=nonnegative_int, default=0, help="scene and split seed (default 0)")
    m.add_argument("--features", choices=("auto", "efficientnet", "pixels"), default="auto",
                   help="image features: pretrained EfficientNet-Lite0 or raw pixels (auto: EfficientNet if available)")
    m.add_argument("--image-size", type=positive_int, default=96, help="input size of the feature extractor (default 96)")
    m.add_argument("--pca-dim", type=positive_int, default=512,
                   help="PCA dimension of the features (default 512; at most the feature width and the number of training images, and lowered to that with a message)")
    m.add_argument("--no-images", action="store_true", help="do not write the rendered PNGs")
    m.set_defaults(func=_command("make-dataset", _make_dataset))

    def data_args(q, make=False):
        q.add_argument("--data", required=True, help="directory in the COCO captioning layout")
        q.add_argument("--no-pca", action="store_true", help="use the non-PCA feature files")
        q.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
        if make:
            q.add_argument("--make-embedded", action="store_true",
                           help="generate the embedded dataset into --data first if it is not there")

    t = sub.add_parser("train", help="train a CaptioningRNN with CaptioningSolver")
    data_args(t, make=True)
    t.add_argument("--cell", choices=("rnn", "lstm"), default="lstm", help="recurrent cell (default lstm)")
    t.add_argument("--hidden-dim", type=positive_int, default=512, help="hidden size H (default 512)")
    t.add_argument("--wordvec-dim", type=positive_int, default=256, help="word vector size W (default 256)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="parameter dtype (default float32)")
    t.add_argument("--update-rule", choices=("adam", "sgd", "sgd_momentum", "rmsprop"), default="adam",
                   help="the assignment's update rule (default adam)")
    t.add_argument("--lr", type=positive_float, default=5e-3, help="learning rate (default 5e-3)")
    t.add_argument("--lr-decay", type=positive_float, default=0.995, help="per-epoch learning-rate factor (default 0.995)")
    t.add_argument("--grad-clip", type=positive_float, default=None,
                   help="clip gradients to this global L2 norm (default: none, as the assignment)")
    t.add_argument("--batch-size", type=positive_int, default=100, help="captions per step (default 100)")
    t.add_argument("--num-epochs", type=positive_int, default=10, help="epochs in all, counting resumed ones (default 10)")
    t.add_argument("--max-train", type=positive_int, default=None, help="subsample this many training captions (default: all)")
    t.add_argument("--max-seconds", type=positive_float, default=None, help="stop after this much training time (default: no limit)")
    t.add_argument("--print-every", type=positive_int, default=50, help="iterations between loss lines (default 50)")
    t.add_argument("--num-val-images", type=positive_int, default=500, help="val images decoded for BLEU each epoch (default 500)")
    t.add_argument("--no-bleu", action="store_true", help="skip the per-epoch validation BLEU")
    t.add_argument("--checkpoint-dir", default="caption_checkpoints",
                   help="where checkpoint.pt is written (default ./caption_checkpoints)")
    t.add_argument("--checkpoint-every", type=positive_int, default=200, help="iterations between checkpoints (default 200)")
    t.add_argument("--resume", default=None, help="checkpoint to resume from exactly (same model settings, update rule and batch size)")
    t.add_argument("--quiet", action="store_true", help="print only the final JSON summary")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    t.set_defaults(func=_command("train", _train))

    s = sub.add_parser("sample", help="caption images of a split, an image file, or a freshly rendered scene")
    data_args(s)
    s.add_argument("--checkpoint", required=True, help="a checkpoint.pt of caption train")
    s.add_argument("--split", choices=("train", "val"), default="val", help="split to caption (default val)")
    s.add_argument("--num", type=positive_int, default=5, help="captions to show from the split (default 5)")
    s.add_argument("--image", help="an image file to caption (embedded task: uses --data's feature extractor)")
    s.add_argument("--scene-seed", type=nonnegative_int, default=None, help="render a new scene of --split from this seed")
    s.add_argument("--out", help="write the image with its caption here (PNG)")
    s.add_argument("--beam-size", type=positive_int, default=1, help="beam width; 1 = greedy (default 1)")
    s.add_argument("--max-length", type=positive_int, default=30, help="longest caption in words (default 30)")
    s.set_defaults(func=_command("sample", _sample))

    e = sub.add_parser("eval", help="corpus BLEU-1..4 of a checkpoint on a split")
    data_args(e)
    e.add_argument("--checkpoint", required=True, help="a checkpoint.pt of caption train")
    e.add_argument("--split", choices=("train", "val"), default="val", help="split to score (default val)")
    e.add_argument("--num-images", type=positive_int, default=None, help="score the first this many images (default: all)")
    e.add_argument("--beam-size", type=positive_int, default=1, help="beam width; 1 = greedy (default 1)")
    e.add_argument("--max-length", type=positive_int, default=30, help="longest caption in words (default 30)")
    e.set_defaults(func=_command("eval", _eval))


def main(argv=None) -> int:
    """``python -m a3ext.captioning.cli caption ...``: the same as ``a3ext caption ...``
    (the module torchrun launches for data-parallel training)."""
    return standalone_main(register_cli, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
