"""The demo's four stages and their settings per mode.

Each stage is a function ``stage(ctx: StageContext) -> None`` that calls the parts'
public functions (it re-implements nothing), writes PNGs into the report folder and
adds page blocks and numbers to ``ctx``. Its settings are ``SETTINGS[mode][stage]``;
``steps`` is the length of the stage's progress bar.

Timing design (2-core machine): ``quick`` aims at about 1-4 minutes per stage (under
10 minutes in all), ``full`` at under an hour in all, ``tiny`` at seconds per stage.
Measured ``quick`` wall seconds, 2 threads, quiet Intel Xeon (2026-12-01): captioning
27, visualization 87, style 45, GANs 158-161 (its five trainings side by side in two
single-threaded worker processes: semi-supervised with its baseline 99, WGAN-GP 70, DC
48, vanilla 40, LS 36; one after the other on 2 threads the earlier, shorter settings
took 239-263 s), plus 20 s once for the GAN quality classifier when it is not cached yet. ``full`` GANs:
772 s (WGAN-GP 622, DC 440, semi-supervised 168, vanilla 150, LS 145, two at a time;
1,105 s one after the other).

May import: numpy, matplotlib, torch and the parts' public API (:mod:`a3ext.captioning`,
:mod:`a3ext.visualization`, :mod:`a3ext.style`, :mod:`a3ext.gan`, :mod:`a3ext.assets`,
:mod:`a3ext.models`, :mod:`a3ext.datasets`), lazily inside each stage; nothing of the
demo (a stage gets its :class:`~a3ext.demo.runner.StageContext` as an argument).
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["SETTINGS", "STAGE_FUNCTIONS", "captioning", "visualization", "style", "gan"]

_PHOTOS_FULL = ["coffee", "squirrel_cls", "baboon", "chicky_512", "orange", "eagle"]
_CLASSES_FULL = ["tarantula", "flamingo", "king penguin", "goldfish", "school bus"]

SETTINGS: dict[str, dict[str, dict]] = {
    "tiny": {
        "captioning": dict(num_train=60, num_val=12, features="pixels", hidden_dim=32, wordvec_dim=16,
                           learning_rate=5e-3, lr_decay=0.95, batch_size=30, epochs={"rnn": 2, "lstm": 2},
                           beam_size=2, grid=3, max_length=17, steps=5),
        "visualization": dict(photos=["coffee", "baboon"], image_size=64, smoothgrad_samples=2, ig_steps=4,
                              fool=[["coffee", "stingray"]], fool_max_iter=3,
                              classes=["flamingo"], class_iterations=2, robust_steps=2,
                              steps=4),
        "style": dict(presets=["starry_night", "feature_inversion"], image_size=32, iterations=3, steps=3),
        "gan": dict(train_images=256, heldout_images=100, quality_epochs=1, batch_size=32,
                    iterations={"vanilla": 3, "ls": 3, "dc": 2, "wgangp": 5}, recipe="fast", checkpoint_every=200,
                    eval_samples=64,
                    semisup_epochs=1, semisup_batch=32, steps=6),
    },
    "quick": {
        "captioning": dict(num_train=2000, num_val=200, features="auto", hidden_dim=256, wordvec_dim=128,
                           learning_rate=5e-3, lr_decay=0.95, batch_size=100, epochs={"rnn": 10, "lstm": 10},
                           beam_size=3, grid=8, max_length=17, steps=5),
        "visualization": dict(photos=["coffee", "squirrel_cls", "baboon", "chicky_512"], image_size=224,
                              smoothgrad_samples=12, ig_steps=24,
                              fool=[["coffee", "stingray"], ["squirrel_cls", "goldfish"], ["baboon", "school bus"]],
                              fool_max_iter=100, classes=["tarantula", "flamingo", "king penguin"],
                              class_iterations=100, robust_steps=128, steps=6),
        "style": dict(presets=["starry_night", "scream", "graffiti", "feature_inversion", "texture_synthesis"],
                      image_size=192, iterations=200, steps=6),
        "gan": dict(train_images=None, heldout_images=1000, quality_epochs=8, batch_size=64,
                    iterations={"vanilla": 2500, "ls": 2500, "dc": 300, "wgangp": 300}, recipe="fast",
                    checkpoint_every=1000, eval_samples=1000,
                    semisup_epochs=48, semisup_batch=100, steps=6),
    },
    "full": {
        "captioning": dict(num_train=2000, num_val=300, features="auto", hidden_dim=512, wordvec_dim=256,
                           learning_rate=5e-3, lr_decay=0.95, batch_size=100, epochs={"rnn": 25, "lstm": 25},
                           beam_size=3, grid=12, max_length=17, steps=5),
        "visualization": dict(photos=_PHOTOS_FULL, image_size=224, smoothgrad_samples=25, ig_steps=64,
                              fool=[[p, t] for p, t in zip(_PHOTOS_FULL, ["stingray", "goldfish", "school bus",
                                                                         "tarantula", "daisy", "hourglass"])],
                              fool_max_iter=100, classes=_CLASSES_FULL, class_iterations=100, robust_steps=256,
                              steps=8),
        "style": dict(presets=["starry_night", "scream", "graffiti", "feature_inversion", "texture_synthesis"],
                      image_size=256, iterations=300, steps=6),
        "gan": dict(train_images=None, heldout_images=1000, quality_epochs=8, batch_size=128,
                    iterations={"vanilla": 5000, "ls": 5000, "dc": 1200, "wgangp": 1200}, recipe="fast",
                    checkpoint_every=1000, eval_samples=1000,
                    semisup_epochs=60, semisup_batch=100, steps=6),
    },
}


# --------------------------------------------------------------------------- helpers

def _figure(width: float, height: float, dpi: int = 100):
    """A matplotlib Figure on the Agg canvas (object API; pyplot is never used, so no
    global backend is touched and no display is needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _moving_mean(v, w: int):
    v = np.asarray(v, dtype=np.float64)
    w = max(1, min(w, v.size))
    if w == 1:
        return np.arange(v.size), v
    return np.arange(w - 1, v.size), np.convolve(v, np.ones(w) / w, mode="valid")


def _words(tokens) -> str:
    return " ".join(tokens) if tokens else "(empty caption)"


# --------------------------------------------------------------------------- 1 captioning

def captioning(ctx) -> None:
    """Embedded captioning dataset, RNN and LSTM captioners trained with the solver,
    loss curves, val BLEU (greedy and beam), and captions for a grid of val images."""
    import torch
    from PIL import Image

    from ..captioning import (CaptioningRNN, CaptioningSolver, captions_to_tokens, evaluate_bleu,
                              load_coco_data, make_dataset)

    s = ctx.settings
    data_dir = ctx.work / "data"
    meta = ctx.substep("dataset", lambda: make_dataset(
        data_dir, num_train=s["num_train"], num_val=s["num_val"], seed=0, features=s["features"],
        save_images=True, verbose=False))
    ctx.advance("dataset")
    data = load_coco_data(data_dir)
    i2w = data["idx_to_word"]
    ctx.metrics["dataset"] = {
        "num_train_images": int(data["train_features"].shape[0]), "num_val_images": int(data["val_features"].shape[0]),
        "num_train_captions": int(data["train_captions"].shape[0]), "num_val_captions": int(data["val_captions"].shape[0]),
        "vocab_size": len(i2w), "feature_dim": int(data["train_features"].shape[1]), "features": meta["features"],
        "seconds": meta["seconds"]}
    ctx.heading("Data")
    ctx.text(f"The embedded captioning task (synthetic scenes of 1-3 coloured shapes, three paraphrased captions "
             f"per image, written in the assignment's COCO file layout): {ctx.metrics['dataset']['num_train_images']} "
             f"training and {ctx.metrics['dataset']['num_val_images']} validation images, vocabulary of {len(i2w)} "
             f"words, {meta['features']} image features reduced by PCA to {meta['pca_dim']} dimensions. "
             + (f"{100 * float(meta.get('val_heldout_fraction', 1.0)):.0f}% of the validation images contain a "
                f"(size, colour, shape) combination never seen in training (compositional generalisation); the "
                f"others are drawn like the training scenes."))

    models, solvers = {}, {}
    for cell in ("rnn", "lstm"):
        torch.manual_seed(0)
        model = CaptioningRNN(data["word_to_idx"], input_dim=data["train_features"].shape[1],
                              wordvec_dim=s["wordvec_dim"], hidden_dim=s["hidden_dim"], cell_type=cell)
        ck = ctx.work / cell
        resume = ck / "checkpoint.pt"
        solver = CaptioningSolver(
            model, data, update_rule="adam", optim_config={"learning_rate": s["learning_rate"]},
            lr_decay=s["lr_decay"], batch_size=s["batch_size"], num_epochs=s["epochs"][cell], verbose=False,
            progress=ctx.progress, seed=0, eval_bleu=True, num_val_images=None, max_length=s["max_length"],
            checkpoint_dir=ck, checkpoint_every=100, resume_from=resume if resume.is_file() else None)
        solver.train()
        model.eval()
        models[cell], solvers[cell] = model, solver
        res = {"iterations": solver.t, "epochs": solver.epoch, "train_seconds": round(solver.train_seconds, 2),
               "hidden_dim": s["hidden_dim"], "wordvec_dim": s["wordvec_dim"],
               "final_loss": float(np.mean(solver.loss_history[-10:])) if solver.loss_history else None,
               "loss_history": [round(x, 5) for x in solver.loss_history], "val_bleu_history": solver.val_bleu_history}
        for tag, beam in (("greedy", 1), ("beam", s["beam_size"])):
            res[f"bleu_{tag}"] = evaluate_bleu(model, data["val_captions"], data["val_image_idxs"],
                                               data["val_features"], i2w, beam_size=beam, max_length=s["max_length"])
        ctx.metrics[cell] = res
        ctx.advance(f"{cell} trained")
    ctx.metrics["beam_size"] = s["beam_size"]

    # loss curves and BLEU per epoch
    fig = _figure(11, 4)
    ax1, ax2 = fig.subplots(1, 2)
    for cell, colour in (("rnn", "tab:blue"), ("lstm", "tab:orange")):
        hist = ctx.metrics[cell]["loss_history"]
        ax1.plot(np.arange(len(hist)), hist, color=colour, alpha=0.25, linewidth=0.8)
        x, m = _moving_mean(hist, max(1, len(hist) // 30))
        ax1.plot(x, m, color=colour, label=cell.upper())
        bh = ctx.metrics[cell]["val_bleu_history"]
        if bh:
            ax2.plot([b["epoch"] for b in bh], [b["bleu4"] for b in bh], "-o", color=colour, ms=3,
                     label=f"{cell.upper()} BLEU-4")
            ax2.plot([b["epoch"] for b in bh], [b["bleu1"] for b in bh], "--", color=colour, alpha=0.6,
                     label=f"{cell.upper()} BLEU-1")
    ax1.set_yscale("log")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("training loss (sum over time / N)")
    ax1.set_title("training loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("corpus BLEU (greedy, val)")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("validation BLEU per epoch")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    curves = ctx.save_figure("curves", fig)
    ctx.heading("Training")
    ctx.figure(curves, "Training loss per iteration (faint: raw, solid: moving mean) and validation corpus BLEU "
                       "after each epoch, greedy decoding.")
    rows = []
    for cell in ("rnn", "lstm"):
        r = ctx.metrics[cell]
        rows.append([cell.upper(), r["iterations"], r["epochs"], r["train_seconds"], r["final_loss"],
                     r["bleu_greedy"]["bleu1"], r["bleu_greedy"]["bleu4"], r["bleu_beam"]["bleu1"],
                     r["bleu_beam"]["bleu4"]])
    ctx.table(["model", "iterations", "epochs", "train s", "final loss", "BLEU-1 greedy", "BLEU-4 greedy",
               f"BLEU-1 beam {s['beam_size']}", f"BLEU-4 beam {s['beam_size']}"], rows,
              f"Validation corpus BLEU over all {ctx.metrics['dataset']['num_val_images']} val images "
              f"(each against its three reference captions); hidden {s['hidden_dim']}, word vectors "
              f"{s['wordvec_dim']}, Adam lr {s['learning_rate']}, batch {s['batch_size']}.")
    ctx.advance("curves")

    # a grid of val images with generated and reference captions
    rng = np.random.RandomState(0)
    val_ids = np.unique(data["val_image_idxs"])
    chosen = np.sort(rng.choice(val_ids, size=min(s["grid"], val_ids.size), replace=False))
    feats = torch.as_tensor(data["val_features"][chosen])
    generated = {}
    for cell, model in models.items():
        generated[(cell, "greedy")] = captions_to_tokens(model.sample(feats, s["max_length"]).numpy(), i2w)
        generated[(cell, "beam")] = captions_to_tokens(
            model.beam_search(feats, s["beam_size"], s["max_length"]).numpy(), i2w)
    refs = captions_to_tokens(data["val_captions"], i2w)
    items = []
    for k, img_id in enumerate(chosen):
        img = Image.open(data_dir / str(data["val_urls"][img_id])).convert("RGB")
        src = ctx.save_pil(f"val_{k:02d}", img.resize((img.width * 2, img.height * 2), Image.Resampling.NEAREST))
        lines = [["RNN greedy", _words(generated[("rnn", "greedy")][k])],
                 ["LSTM greedy", _words(generated[("lstm", "greedy")][k])],
                 [f"LSTM beam {s['beam_size']}", _words(generated[("lstm", "beam")][k])],
                 [f"RNN beam {s['beam_size']}", _words(generated[("rnn", "beam")][k])]]
        lines += [["reference", _words(refs[j])] for j in np.flatnonzero(data["val_image_idxs"] == img_id)]
        items.append({"src": src, "title": f"val image {int(img_id)}", "lines": lines})
    ctx.heading("Captions of validation images")
    ctx.gallery(items, "Generated captions (greedy and beam search) and every reference caption.")
    ctx.metrics["samples"] = [{"image": int(i), **{f"{c}_{d}": _words(generated[(c, d)][k]) for (c, d) in generated}}
                              for k, i in enumerate(chosen)]
    ctx.advance("caption grid")
    for r in (ctx.metrics["rnn"], ctx.metrics["lstm"]):
        r.pop("loss_history")  # long; the curve is on the page (kept in the stage record's work dir)
    ctx.summary = (f"val BLEU-4 greedy: RNN {ctx.metrics['rnn']['bleu_greedy']['bleu4']:.3f}, "
                   f"LSTM {ctx.metrics['lstm']['bleu_greedy']['bleu4']:.3f}; beam {s['beam_size']}: "
                   f"RNN {ctx.metrics['rnn']['bleu_beam']['bleu4']:.3f}, LSTM {ctx.metrics['lstm']['bleu_beam']['bleu4']:.3f}")


# --------------------------------------------------------------------------- 2 visualization

def visualization(ctx) -> None:
    """Saliency, SmoothGrad, Integrated Gradients and Grad-CAM on embedded photos,
    fooling images with their differences, class visualizations, on EfficientNet-Lite0."""
    import torch

    from .. import assets
    from ..models import efficientnet_lite0
    from ..visualization import (compute_saliency_maps, completeness_delta, grad_cam,
                                 integrated_gradients, make_fooling_images, overlay_heatmap, reduce_channels,
                                 resolve_class, short_label, smoothgrad, visualize_class)
    from ..visualization.render import Panel, save_figure

    s = ctx.settings
    model = efficientnet_lite0(pretrained=True)
    labels = model.labels
    size = s["image_size"]
    photos = list(s["photos"])
    X = torch.cat([model.preprocess(assets.image(p), size=size) for p in photos])
    with torch.no_grad():
        probs = model(X).softmax(dim=1)
    top_p, top = probs.max(dim=1)
    y = [int(v) for v in top]
    ctx.metrics["model"] = "EfficientNet-Lite0 (ImageNet weights)"
    ctx.metrics["image_size"] = size
    ctx.metrics["predictions"] = [{"photo": p, "class": y[i], "label": short_label(labels[y[i]]),
                                   "probability": float(top_p[i])} for i, p in enumerate(photos)]
    ctx.text(f"All on the pretrained EfficientNet-Lite0 (real ImageNet weights, {size}×{size} inputs). "
             f"Attributions are for the model's top-1 class of each photo.")
    ctx.table(["photo", "top-1 class", "index", "probability"],
              [[p["photo"], p["label"], p["class"], p["probability"]] for p in ctx.metrics["predictions"]],
              "Predictions on the embedded photos.")
    ctx.advance("predictions")

    def attributions():
        times = {}
        t = time.perf_counter()
        sal = compute_saliency_maps(X, y, model)
        times["saliency"] = time.perf_counter() - t
        t = time.perf_counter()
        sg = reduce_channels(smoothgrad(X, y, model, n_samples=s["smoothgrad_samples"],
                                        generator=torch.Generator().manual_seed(0)))
        times["smoothgrad"] = time.perf_counter() - t
        t = time.perf_counter()
        ig_attr = integrated_gradients(X, y, model, n_steps=s["ig_steps"])
        times["integrated_gradients"] = time.perf_counter() - t
        delta, diff = completeness_delta(ig_attr, X, y, model)
        ig = reduce_channels(ig_attr, "abssum")
        t = time.perf_counter()
        cam = grad_cam(X, y, model)
        times["grad_cam"] = time.perf_counter() - t
        rows = []
        for i, p in enumerate(photos):
            photo = model.deprocess(X[i:i + 1])
            name = short_label(labels[y[i]])
            rows.append([Panel(photo, f"{p}: {name} ({float(top_p[i]):.2f})"),
                         Panel(sal[i].numpy(), "saliency |∂s/∂x| (max over RGB)", cmap="hot"),
                         Panel(sg[i].numpy(), f"SmoothGrad ({s['smoothgrad_samples']} samples)", cmap="hot"),
                         Panel(ig[i].numpy(), f"Integrated Gradients ({s['ig_steps']} steps)", cmap="hot"),
                         Panel(overlay_heatmap(photo, cam[i]), "Grad-CAM (last conv map)")])
        src = ctx.png("attributions", lambda path: save_figure(rows, path, cell_inches=2.6, dpi=90))
        ctx.heading("Saliency maps and attributions")
        ctx.figure(src, "Per photo: the image, its saliency map (the assignment's: absolute gradient of the class "
                        "score, max over channels), SmoothGrad, Integrated Gradients (|attribution| summed over "
                        "channels; zero baseline) and Grad-CAM over the photo.")
        rel = (delta.abs() / diff.abs().clamp_min(1e-12)).tolist()
        ctx.table(["photo", "Σ IG attributions", "s(x) − s(baseline)", "relative completeness error"],
                  [[p, float(delta[i] + diff[i]), float(diff[i]), rel[i]] for i, p in enumerate(photos)],
                  f"Completeness of Integrated Gradients ({s['ig_steps']} quadrature steps): the attributions "
                  f"should sum to the score difference; more steps shrink the gap.")
        return {"seconds": {k: round(v, 2) for k, v in times.items()},
                "completeness_relative_error": rel, "ig_steps": s["ig_steps"],
                "smoothgrad_samples": s["smoothgrad_samples"]}

    att = ctx.substep("attributions", attributions)
    ctx.metrics["saliency"] = {"photos": photos, "seconds": att["seconds"]}
    ctx.metrics["integrated_gradients"] = {"steps": att["ig_steps"],
                                           "completeness_relative_error": att["completeness_relative_error"]}
    ctx.metrics["smoothgrad"] = {"samples": att["smoothgrad_samples"]}
    ctx.advance("attributions")

    def fooling():
        idx = [photos.index(p) for p, _ in s["fool"]]
        targets = [resolve_class(t, labels) for _, t in s["fool"]]
        t0 = time.perf_counter()
        results = make_fooling_images(X[idx], targets, model, max_iter=s["fool_max_iter"], raise_on_failure=False)
        seconds = time.perf_counter() - t0
        rows, out = [], []
        scale = (model.pixel_std * 255.0).view(1, 3, 1, 1)
        for j, (i, r) in enumerate(zip(idx, results)):
            diff = ((r.image - X[i:i + 1]) * scale)[0].permute(1, 2, 0).numpy()  # 0-255 pixel units
            m = max(float(np.abs(diff).max()), 1e-6)
            rows.append([Panel(model.deprocess(X[i:i + 1]),
                               f"original: {short_label(labels[r.original_class])} ({r.original_probability:.2f})"),
                         Panel(model.deprocess(r.image),
                               f"fooling: {short_label(labels[r.final_class])} ({r.target_probability:.2f})"),
                         Panel(np.clip(0.5 + 0.5 * diff / m, 0, 1),
                               f"difference ×{127.5 / m:.0f} (max {m:.1f}/255)")])
            out.append({"photo": photos[i], "target": targets[j], "target_label": short_label(labels[targets[j]]),
                        "fooled": r.fooled, "iterations": r.iterations, "linf_pixels": r.linf_pixels,
                        "l2": r.l2, "target_probability": r.target_probability,
                        "original_label": short_label(labels[r.original_class])})
        src = ctx.png("fooling", lambda path: save_figure(rows, path, cell_inches=2.8, dpi=90))
        ctx.heading("Fooling images")
        ctx.figure(src, "Original, fooling image (gradient ascent on the target class score, steps of "
                        "lr·g/‖g‖, stopped as soon as the model predicts the target) and the difference, magnified.")
        ctx.table(["photo", "target", "fooled", "iterations", "L∞ change (0-255)", "target probability"],
                  [[o["photo"], o["target_label"], o["fooled"], o["iterations"], o["linf_pixels"],
                    o["target_probability"]] for o in out])
        return {"results": out, "seconds": round(seconds, 2), "max_iter": s["fool_max_iter"]}

    ctx.metrics["fooling"] = ctx.substep("fooling", fooling)
    ctx.advance("fooling")

    cv = []
    ctx.heading("Class visualization")
    from ..visualization.feature_vis import render_class, transformed_probability
    for k, cls in enumerate(s["classes"]):
        def one(cls=cls, k=k):
            target = resolve_class(cls, labels)
            t0 = time.perf_counter()
            r = visualize_class(target, model, num_iterations=s["class_iterations"], size=size,
                                show_every=0, generator=torch.Generator().manual_seed(k))
            seconds = time.perf_counter() - t0
            pixels = (r.image * model.pixel_std + model.pixel_mean).clamp(0, 1)
            tp = transformed_probability(model, pixels, target)
            t0 = time.perf_counter()
            f = render_class(target, model, size=size, steps=s["robust_steps"],
                             generator=torch.Generator().manual_seed(k))
            robust_seconds = time.perf_counter() - t0
            name = short_label(labels[target])
            src = ctx.save_pil(f"class_{k}", model.deprocess(r.image))
            src_r = ctx.save_pil(f"class_{k}_robust", model.deprocess((f.image - model.pixel_mean) / model.pixel_std))
            for src_k, title, p, tp_k, top1, it in (
                    (src, f"{name}: assignment's method", r.probability, tp, r.predicted_class, r.iterations),
                    (src_r, f"{name}: Fourier + colour + transforms", f.probability, f.transformed_probability,
                     f.predicted_class, f.iterations)):
                ctx.blocks.append({"type": "gallery_item", "src": src_k, "title": title,
                                   "lines": [["probability of the class", f"{p:.3f}"],
                                             ["mean p over 32 random views", f"{tp_k:.3f}"],
                                             ["top-1", short_label(labels[top1])],
                                             ["iterations", str(it)]]})
            return {"class": target, "label": name, "probability": r.probability, "transformed_probability": tp,
                    "predicted": r.predicted_class, "iterations": r.iterations, "seconds": round(seconds, 2),
                    "robust": {"probability": f.probability, "transformed_probability": f.transformed_probability,
                               "predicted": f.predicted_class, "iterations": f.iterations,
                               "seconds": round(robust_seconds, 2)}}
        cv.append(ctx.substep(f"class_{k}", one))
        ctx.advance(f"class {cls}")
    # gather the per-class cards into one gallery
    cards = [b for b in ctx.blocks if b.get("type") == "gallery_item"]
    ctx.blocks = [b for b in ctx.blocks if b.get("type") != "gallery_item"]
    ctx.gallery([{k: v for k, v in c.items() if k != "type"} for c in cards],
                "Images generated from noise to maximise a class score, two ways. The assignment's method "
                "(create_class_visualization: gradient ascent on pixels, L2 regularisation, jitter, blur every "
                "10 steps) reaches a high probability with colour noise a person does not recognise. The "
                "feature-visualization method (render_class: a Fourier-basis image in a decorrelated colour "
                "space, optimised with Adam through random pad, jitter, scale and rotation every step) shows "
                "the class. 'Mean p over 32 random views' scores the final image under random crops, scales "
                "0.8-1.2 and rotations of ±10°: a picture of the class keeps its probability, a pixel "
                "pattern tuned to one view does not.")
    ctx.metrics["class_visualization"] = cv
    fooled = sum(o["fooled"] for o in ctx.metrics["fooling"]["results"])
    ctx.summary = (f"{len(photos)} photos; fooled {fooled}/{len(ctx.metrics['fooling']['results'])}; class "
                   "visualizations, mean p over random views: assignment "
                   + ", ".join(f"{c['transformed_probability']:.2f}" for c in cv) + "; robust "
                   + ", ".join(f"{c['robust']['transformed_probability']:.2f}" for c in cv))


# --------------------------------------------------------------------------- 3 style

def style(ctx) -> None:
    """The style-transfer presets (Starry Night, The Scream, the graffiti wall), feature
    inversion and texture synthesis; content/style/result side by side; loss curves."""
    from .. import style as st

    s = ctx.settings
    cnn = st.default_cnn()
    n = s["iterations"]
    results = {}
    ctx.text(f"Gatys et al. style transfer on EfficientNet-Lite0 with the project's layer choice "
             f"(content layer {st.EFFICIENTNET_SETTINGS.content_layer}, style layers "
             f"{list(st.EFFICIENTNET_SETTINGS.style_layers)}), Gram matrices from the C++ op, "
             f"{n} Adam steps at {s['image_size']} px ("
             + ("the assignment's schedule: learning rate decayed at step 180, clamping until step 190)."
                if n == 200 else f"the assignment's 200-step schedule scaled to {n} steps)."))
    for name in s["presets"]:
        preset = st.PRESETS[name]

        def run(name=name, preset=preset):
            kwargs = dict(image_size=s["image_size"], num_iterations=n, progress=ctx.progress)
            if n != 200:  # the assignment's schedule (decay at 180, clamp until 190) scaled to n steps
                kwargs.update(decay_lr_at=max(0, int(round(0.9 * n)) - 1), clamp_until=int(round(0.95 * n)))
            t0 = time.perf_counter()
            res = st.run_preset(name, cnn, **kwargs)
            seconds = time.perf_counter() - t0
            src = ctx.png(name, lambda path: st.save_comparison(res, path, cnn, content_name=preset.content,
                                                                 style_names=[preset.style], title=name.replace("_", " ")))
            ctx.figure(src, preset.description)
            h = res.history
            return {"content": preset.content, "style": preset.style, "iterations": n,
                    "image_size": s["image_size"], "seconds": round(seconds, 2),
                    "initial": {k: v[0] for k, v in h.items()}, "final": {k: v[-1] for k, v in h.items()},
                    "total_history": [float(f"{v:.6g}") for v in h["total"]]}

        results[name] = ctx.substep(name, run)
        ctx.advance(name)
    fig = _figure(7.5, 4)
    ax = fig.subplots()
    for name, r in results.items():
        h = np.asarray(r["total_history"], dtype=np.float64)
        ax.plot(np.arange(h.size), h / max(h[0], 1e-30), label=name.replace("_", " "))
    ax.set_yscale("log")
    ax.set_xlabel("Adam step")
    ax.set_ylabel("total loss / initial total loss")
    ax.set_title("style-transfer losses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.figure(ctx.save_figure("losses", fig), "Total loss (content + style + total variation) of each run, "
                                               "relative to its first step.")
    ctx.table(["run", "content", "style", "seconds", "initial total", "final total", "final content",
               "final style", "final TV"],
              [[k, r["content"], r["style"], r["seconds"], r["initial"]["total"], r["final"]["total"],
                r["final"]["content"], r["final"]["style"], r["final"]["tv"]] for k, r in results.items()])
    for r in results.values():
        r.pop("total_history")
    ctx.metrics["presets"] = results
    ctx.metrics["backbone"] = "EfficientNet-Lite0"
    ctx.advance("losses")
    ctx.summary = (f"{len(results)} runs at {s['image_size']} px, {n} steps: "
                   + ", ".join(f"{k} {r['final']['total'] / max(r['initial']['total'], 1e-30):.2g}× loss"
                               for k, r in results.items()))


# --------------------------------------------------------------------------- 4 GANs

def gan(ctx) -> None:
    """Vanilla, least-squares, DC and WGAN-GP generators on the 5k real MNIST digits with
    loss curves, sample grids and the quality metric; semi-supervised GAN vs baseline."""
    import torch

    from .. import datasets as ds
    from .. import gan as G
    from ..gan.metrics import DigitQuality, quality_model

    s = ctx.settings
    if s["train_images"] is None:
        quality, splits = quality_model("mnist5k", seed=0, epochs=s["quality_epochs"])
    else:  # tiny: a small subset and a classifier trained for it alone (not cached)
        full = G.load_digits("mnist5k", seed=0)
        gen = torch.Generator().manual_seed(0)
        pick = lambda d, n: d.subset(torch.randperm(len(d), generator=gen)[:n])  # noqa: E731
        splits = ds.Splits(pick(full.train, s["train_images"]), pick(full.val, s["heldout_images"]),
                           pick(full.test, s["heldout_images"]))
        quality = DigitQuality.fit(splits.train.images, splits.train.labels, epochs=s["quality_epochs"], seed=0,
                                   val_images=splits.val.images, val_labels=splits.val.labels)
    heldout = torch.cat([splits.val.images, splits.test.images])[:s["eval_samples"]]
    floor = quality.floor(heldout)
    ctx.metrics["quality_floor"] = floor
    ctx.metrics["quality_classifier_val_accuracy"] = quality.info.get("val_accuracy")
    ctx.metrics["train_images"] = len(splits.train)
    ctx.advance("quality model")
    ctx.text(f"{len(splits.train)} real MNIST digits for training. Sample quality is this project's own metric: "
             f"a small CNN trained on the real training digits (val accuracy "
             f"{(quality.info.get('val_accuracy') or 0):.3f}) gives each batch of {s['eval_samples']} samples a "
             f"mean confidence, a class entropy (ln 10 = 2.30 when every digit is equally common) and a Fréchet "
             f"distance on its penultimate features — not comparable to Inception FIDs. Held-out real digits "
             f"give the floor.")

    names = {"vanilla": "vanilla GAN", "ls": "least-squares GAN", "dc": "DCGAN", "wgangp": "WGAN-GP"}
    recipe = G.RECIPES[s["recipe"]]

    def describe(kind: str) -> str:
        r = recipe[kind]
        text = (f"Adam lr {r['lr']:g}, betas ({r['betas'][0]:g}, {r['betas'][1]:g}), "
                f"{r['critic_steps']} D step{'s' if r['critic_steps'] > 1 else ''} per G step")
        if r["gradient_penalty_weight"]:
            text += f", gradient penalty {r['gradient_penalty_weight']:g}"
        if r["ema_decay"]:
            text += f", samples from a moving average of G (decay warming up to {r['ema_decay']:g})"
        return text

    ctx.text(f"The assignment's networks and losses, trained with a3ext.gan.RECIPES[{s['recipe']!r}] "
             f"(batch {s['batch_size']}): " + "; ".join(f"{names[k]}: {describe(k)}" for k in G.KINDS)
             + ". The assignment's own settings stay available as recipe 'assignment' and in run_a_gan.")
    # the four trainings and the semi-supervised run are independent: they run side by
    # side in worker processes (ctx.jobs), longest first (_JOB_ORDER); finished ones are
    # reused
    order = _JOB_ORDER[ctx.mode]
    assert sorted(order) == sorted([*G.KINDS, "semisup"]), order
    jobs = {}
    for key in order:
        if not ctx.substep_done(key):
            jobs[key] = ((_semisup_job, (splits, s, ctx.progress)) if key == "semisup" else
                         (_gan_job, (key, splits.train.images, splits.train.labels, s, ctx.work / key, ctx.progress)))
    with ctx.jobs(jobs, planned=len(order)) as pool:
        samples, curves = [], []
        for kind in G.KINDS:
            def run(kind=kind):
                r = pool.result(kind)
                images, history = r.pop("images"), r.pop("history")
                score = quality.score(images)
                grid = ctx.png(f"{kind}_samples", lambda path: G.save_image_grid(images[:64], path, nrow=8, scale=2))
                loss = ctx.png(f"{kind}_losses", lambda path: G.plot_losses(history, path,
                                                                           title=f"{names[kind]} losses"))
                return dict(r, recipe=s["recipe"], settings=dict(G.RECIPES[s["recipe"]][kind]), quality=score,
                            samples_png=grid, losses_png=loss)
            r = ctx.substep(kind, run)
            # the trainer's checkpoint (tens of MB) only served a resume inside this training
            (ctx.work / kind / "checkpoint.pt").unlink(missing_ok=True)
            ctx.metrics[kind] = r
            q = r["quality"]
            samples.append({"src": r["samples_png"], "title": names[kind],
                            "lines": [["training", f"{r['iterations']} discriminator steps, {r['seconds']:.0f} s"
                                       + (f" ({r['threads']} thread{'s' if r['threads'] > 1 else ''}, beside the "
                                          f"other trainings)" if r.get("parallel") else "")],
                                      ["settings", describe(kind)],
                                      ["confidence / class entropy", f"{q['confidence']:.3f} / {q['class_entropy']:.3f}"],
                                      ["Fréchet distance", f"{q['frechet']:.3g}"]]})
            curves.append({"src": r["losses_png"], "title": names[kind], "lines": []})
            ctx.advance(kind)
        ctx.heading("Samples")
        ctx.gallery(samples, "64 samples of each generator (fixed noise), with its quality numbers.")
        rows = [[names[k], ctx.metrics[k]["iterations"], ctx.metrics[k]["seconds"],
                 ctx.metrics[k]["quality"]["confidence"], ctx.metrics[k]["quality"]["class_entropy"],
                 ctx.metrics[k]["quality"]["digit_score"], ctx.metrics[k]["quality"]["frechet"]] for k in G.KINDS]
        rows.append(["held-out real digits (floor)", "—", "—", floor["confidence"], floor["class_entropy"],
                     floor["digit_score"], floor["frechet"]])
        ctx.table(["generator", "D steps", "train s", "confidence", "class entropy", "digit score",
                   "Fréchet distance"], rows,
                  "Lower Fréchet distance is better; the digit score is exp(E KL(p(y|x) ‖ p(y))), 1 to 10.")
        ctx.heading("Loss curves")
        ctx.gallery(curves, "Discriminator (critic) and generator losses per iteration.", min_width=520)

        def semisup():
            r = pool.result("semisup")
            imgs = r.pop("samples")
            src = ctx.png("semisup_samples", lambda path: G.save_image_grid(imgs, path, nrow=8, scale=2))
            ctx.heading("Semi-supervised classification")
            ctx.table(["classifier", "labeled images", "test accuracy"],
                      [["semi-supervised GAN discriminator (K+1 classes, feature matching)", r["num_labeled"],
                        f"{100 * r['gan_accuracy']:.1f} %"],
                       ["supervised-only baseline (same network, same labeled images)", r["num_labeled"],
                        f"{100 * r['baseline_accuracy']:.1f} %"]],
                      f"{r['labels_per_class']} labels per class, {r['num_unlabeled']} unlabeled training digits, "
                      f"{r['epochs']} epochs, {r['num_test']} test digits; the semi-supervised lead: "
                      f"{100 * (r['gan_accuracy'] - r['baseline_accuracy']):+.1f} points."
                      + (" The semi-supervised lead grows with passes over the unlabeled digits (measured, "
                         "one thread, seeds 0 / 1 / 2: 16 epochs +3.2 / +0.4 / +4.4 points, 40 epochs +8.8 / +9.6 / "
                         "+11.0, 48 epochs (quick mode) +11.8 / +10.2 / +15.2; 60 epochs (full mode, seed 0) +13.2)."
                         if r["epochs"] < 60 else ""))
            ctx.figure(src, "Samples of the feature-matching generator (it is trained to help the classifier, "
                            "not to draw good digits).", width=300)
            return r

        ctx.metrics["semi_supervised"] = ctx.substep("semisup", semisup)
        ctx.advance("semi-supervised")
    ss = ctx.metrics["semi_supervised"]
    ctx.summary = ("Fréchet " + ", ".join(f"{k} {ctx.metrics[k]['quality']['frechet']:.3g}" for k in G.KINDS)
                   + f" (real {floor['frechet']:.3g}); semi-supervised {100 * ss['gan_accuracy']:.1f}% vs baseline "
                   f"{100 * ss['baseline_accuracy']:.1f}%")


# the GAN stage's jobs per mode, longest first (one thread each beside another job, quiet
# Intel Xeon: quick mode semi-supervised (48 epochs and its baseline) 99-110 s, WGAN-GP
# 66-70, DCGAN 48-52, vanilla 40-44, LS 36-42; full mode WGAN-GP 622, DCGAN 440,
# semi-supervised 168, vanilla 150, LS 145: the last three end the DCGAN's queue beside
# WGAN-GP's). Not a setting: the order changes no result, only when each is ready.
_FULL_JOB_ORDER = ("wgangp", "dc", "semisup", "vanilla", "ls")
_JOB_ORDER = {"tiny": _FULL_JOB_ORDER, "quick": ("semisup", "wgangp", "dc", "vanilla", "ls"),
              "full": _FULL_JOB_ORDER}


def _gan_job(kind: str, images, labels, s: dict, work_dir, progress: bool = False) -> dict:
    """Train one GAN of the stage (a worker process's job) and draw its evaluation
    samples: ``{"iterations", "generator_steps", "seconds", "threads", "parallel",
    "final_d_loss", "final_g_loss", "history", "images"}``. Progress bars only in the
    demo's own process."""
    import torch

    from .. import gan as G

    progress = progress and not _in_worker()
    t0 = time.perf_counter()
    trainer = G.train_gan(kind, images, labels=labels, num_epochs=10**6, batch_size=s["batch_size"], seed=0,
                          out_dir=work_dir, resume=True, show_every=10**9, sample_every=10**9,
                          checkpoint_every=s["checkpoint_every"], max_iterations=s["iterations"][kind],
                          recipe=s["recipe"], progress=progress, log=None)
    seconds = time.perf_counter() - t0
    h = trainer.history
    return {"iterations": trainer.iteration, "generator_steps": len(h["g_loss"]), "seconds": round(seconds, 2),
            "threads": torch.get_num_threads(), "parallel": _in_worker(),
            "final_d_loss": h["d_loss"][-1] if h["d_loss"] else None,
            "final_g_loss": h["g_loss"][-1] if h["g_loss"] else None,
            "history": h, "images": G.generate(trainer.sampler, s["eval_samples"], seed=1)}


def _semisup_job(splits, s: dict, progress: bool = False) -> dict:
    """The stage's semi-supervised GAN vs baseline run (a worker process's job): its
    numbers and 64 samples of the generator in [-1, 1]."""
    import torch

    from ..gan.semi_supervised import run_semi_supervised

    progress = progress and not _in_worker()
    t0 = time.perf_counter()
    r = run_semi_supervised("mnist5k", labels_per_class=10, epochs=s["semisup_epochs"],
                            batch_size=s["semisup_batch"], seed=0, progress=progress, splits=splits)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        z = 2.0 * torch.rand(64, r.generator.noise_dim, generator=torch.Generator().manual_seed(0)) - 1.0
        imgs = 2.0 * r.generator(z) - 1.0
    return {"gan_accuracy": r.gan_accuracy, "baseline_accuracy": r.baseline_accuracy,
            "labels_per_class": r.labels_per_class, "num_labeled": r.num_labeled,
            "num_unlabeled": r.num_unlabeled, "num_test": r.num_test, "epochs": r.epochs,
            "seconds": round(seconds, 2), "threads": torch.get_num_threads(), "parallel": _in_worker(),
            "samples": imgs}


def _in_worker() -> bool:
    """Whether this process is a worker of the demo's job pool (its initializer sets
    ``A3EXT_JOB_WORKER``; the demo does not import its runner here)."""
    import os

    return os.environ.get("A3EXT_JOB_WORKER") == "1"


STAGE_FUNCTIONS = {"captioning": captioning, "visualization": visualization, "style": style, "gan": gan}
