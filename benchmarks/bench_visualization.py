"""Network visualization on the pretrained EfficientNet-Lite0 at 224 px: saliency
time, fooling images (iterations, perturbation size, time) and class
visualizations (final probability, time).

    python benchmarks/bench_visualization.py [--parts saliency,fooling,classviz] [--reps 3]
        [--size 224] [--device cpu|cuda] [--json bench_results/bench_visualization.json]

* saliency: ``compute_saliency_maps`` for 5 photos, one image per call and the 5 as
  one batch; median wall seconds over ``--reps`` (and process CPU seconds, which
  on a shared machine are steadier than wall time).
* fooling: 10 photos x 3 targets drawn with ``torch.randint(0, 1000, (10, 3))``
  from ``torch.Generator().manual_seed(0)`` (the test uses the first column);
  assignment settings (learning_rate 1, max_iter 100); each photo's 3 runs go
  through ``make_fooling_images`` as one batch. Reports mean/max steps and the
  L-inf perturbation in 0-255 pixel units; the target is every run fooled within 100.
* classviz: ``visualize_class`` (``create_class_visualization``) with the assignment's defaults (100
  steps, lr 25, l2 1e-3, blur every 10, jitter 16), seed 0, for 5 classes of the
  assignment; the target is p >= 0.9 for each.
* featurevis: the same 5 classes with ``feature_vis.render_class`` (Fourier basis,
  decorrelated colour, random transforms; ``--featurevis-steps``) beside the
  assignment's method, both scored by ``transformed_probability`` (mean p over 32
  random crops, scales 0.8-1.2 and rotations +-10 degrees); writes the two rows of
  pictures to ``--figure``. Target: the robust method >= 0.8 on every class.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, print_table, write_json  # noqa: E402

from a3ext import assets, models  # noqa: E402
from a3ext.visualization import (compute_saliency_maps, visualize_class,  # noqa: E402
                                 make_fooling_images)

PHOTOS = ["chelsea", "coffee", "rocket", "motorcycle_left", "china", "flower", "squirrel_cls",
          "baboon", "orange", "fruits"]
CLASSES = [76, 78, 187, 683, 366]  # tarantula, tick, Yorkshire terrier, oboe, gorilla


def timed(fn, device):
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_saliency(model, X, y, reps, device):
    rows = []
    for label, batch in (("1 image per call", 1), ("5 images, one batch", 5)):
        walls, cpus = [], []
        compute_saliency_maps(X[:batch], y[:batch], model)  # warm-up
        for _ in range(reps):
            w = c = 0.0
            for start in range(0, 5, batch):
                _, dw, dc = timed(lambda: compute_saliency_maps(X[start:start + batch], y[start:start + batch],
                                                                model), device)
                w, c = w + dw, c + dc
            walls.append(w / 5)
            cpus.append(c / 5)
        rows.append({"case": label, "wall_s_per_image": statistics.median(walls),
                     "cpu_s_per_image": statistics.median(cpus)})
    return rows


def bench_fooling(model, X, y):
    targets = torch.randint(0, 1000, (len(PHOTOS), 3), generator=torch.Generator().manual_seed(0))
    runs = []
    for i, name in enumerate(PHOTOS):
        results, wall, cpu = timed(lambda: make_fooling_images(X[i:i + 1].expand(3, -1, -1, -1), targets[i],
                                                               model, learning_rate=1, max_iter=100,
                                                               raise_on_failure=False), X.device.type)
        for r in results:
            runs.append({"photo": name, "true_class": int(y[i]), "target": r.target, "fooled": r.fooled,
                         "iterations": r.iterations, "linf_pixels": r.linf_pixels,
                         "target_probability": r.target_probability, "wall_s": wall / 3, "cpu_s": cpu / 3})
    its = [r["iterations"] for r in runs]
    linf = [r["linf_pixels"] for r in runs]
    summary = {"runs": len(runs), "fooled": sum(r["fooled"] for r in runs), "mean_iterations": statistics.mean(its),
               "max_iterations": max(its), "mean_linf_pixels": statistics.mean(linf), "max_linf_pixels": max(linf),
               "wall_s_per_run": statistics.mean(r["wall_s"] for r in runs),
               "cpu_s_per_run": statistics.mean(r["cpu_s"] for r in runs)}
    return runs, summary


def bench_classviz(model, size, device):
    rows = []
    for c in CLASSES:
        r, wall, cpu = timed(lambda: visualize_class(c, model, generator=torch.Generator().manual_seed(0),
                                                                size=size), device)
        rows.append({"class": c, "name": model.labels[c].split(",")[0], "probability": r.probability,
                     "predicted": r.predicted_class, "wall_s": wall, "cpu_s": cpu})
        print(f"  classviz {c} {rows[-1]['name']}: p={r.probability:.3f} ({wall:.1f} s)", flush=True)
    return rows


def bench_featurevis(model, size, steps, figure):
    from a3ext.visualization.feature_vis import render_class, transformed_probability
    from a3ext.visualization.render import Panel, save_figure

    rows, top, bottom = [], [], []
    for c in CLASSES:
        name = model.labels[c].split(",")[0]
        v, wall_a, _ = timed(lambda: visualize_class(c, model, generator=torch.Generator().manual_seed(0),
                                                     size=size), "cpu")
        pix = (v.image * model.pixel_std + model.pixel_mean).clamp(0, 1)
        r, wall_r, _ = timed(lambda: render_class(c, model, size=size, steps=steps,
                                                  generator=torch.Generator().manual_seed(0)), "cpu")
        rows.append({"class": c, "name": name, "assignment_p": v.probability,
                     "assignment_tp": transformed_probability(model, pix, c), "robust_p": r.probability,
                     "robust_tp": r.transformed_probability, "assignment_s": wall_a, "robust_s": wall_r})
        print(f"  featurevis {c} {name}: assignment p={v.probability:.3f} tp={rows[-1]['assignment_tp']:.3f}; "
              f"robust p={r.probability:.3f} tp={r.transformed_probability:.3f} ({wall_r:.0f} s)", flush=True)
        top.append(Panel(model.deprocess(v.image), f"{name}: assignment, p~{rows[-1]['assignment_tp']:.2f}"))
        bottom.append(Panel(model.deprocess((r.image - model.pixel_mean) / model.pixel_std),
                            f"{name}: robust, p~{r.transformed_probability:.2f}"))
    if figure:
        save_figure([top, bottom], figure, suptitle="class visualization: assignment (top) vs Fourier + "
                    "decorrelated colour + transforms (bottom); p~ = mean p over 32 random views")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="saliency,fooling,classviz")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--json", default="bench_results/bench_visualization.json")
    parser.add_argument("--featurevis-steps", type=int, default=256)
    parser.add_argument("--figure", default="docs/images/class_visualization_robust.png")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    model = models.efficientnet_lite0().to(args.device)
    X = torch.cat([model.preprocess(assets.image(n), size=args.size) for n in PHOTOS])
    y = torch.tensor([assets.info(n).imagenet_class for n in PHOTOS])
    payload = {"environment": environment(args.device), "model": "efficientnet_lite0", "size": args.size}
    if "saliency" in parts:
        rows = bench_saliency(model, X, y, args.reps, args.device)
        payload["saliency"] = rows
        print(f"\nsaliency maps, 5 photos at {args.size} px (median of {args.reps})")
        print_table(rows, [("case", "case", "s"), ("wall_s_per_image", "wall s/image", ".3f"),
                           ("cpu_s_per_image", "cpu s/image", ".3f")])
    if "fooling" in parts:
        runs, summary = bench_fooling(model, X, y)
        payload["fooling"] = {"summary": summary, "runs": runs}
        print(f"\nfooling images, {len(PHOTOS)} photos x 3 seeded targets, lr 1, max_iter 100")
        print_table(runs, [("photo", "photo", "s"), ("target", "target", "d"), ("fooled", "fooled", ""),
                           ("iterations", "steps", "d"), ("linf_pixels", "L-inf /255", ".2f"),
                           ("target_probability", "p(target)", ".3f")])
        print(f"fooled {summary['fooled']}/{summary['runs']}; steps mean {summary['mean_iterations']:.2f} "
              f"max {summary['max_iterations']}; L-inf mean {summary['mean_linf_pixels']:.2f}/255 "
              f"max {summary['max_linf_pixels']:.2f}/255; {summary['wall_s_per_run']:.2f} s wall, "
              f"{summary['cpu_s_per_run']:.2f} s CPU per run (batches of 3)")
    if "classviz" in parts:
        rows = bench_classviz(model, args.size, args.device)
        payload["classviz"] = rows
        print(f"\nclass visualization, assignment defaults (100 steps), seed 0, {args.size} px")
        print_table(rows, [("class", "class", "d"), ("name", "name", "s"), ("probability", "p", ".3f"),
                           ("predicted", "top", "d"), ("wall_s", "wall s", ".1f"), ("cpu_s", "cpu s", ".1f")])
    if "featurevis" in parts:
        rows = bench_featurevis(model, args.size, args.featurevis_steps, args.figure)
        payload["featurevis"] = rows
        print(f"\nclass visualization, assignment vs robust ({args.featurevis_steps} steps), seed 0, {args.size} px;"
              f" tp = mean probability over 32 random crops/scales/rotations")
        print_table(rows, [("class", "class", "d"), ("name", "name", "s"), ("assignment_p", "assign p", ".3f"),
                           ("assignment_tp", "assign tp", ".3f"), ("robust_p", "robust p", ".3f"),
                           ("robust_tp", "robust tp", ".3f"), ("robust_s", "robust s", ".0f")])
    write_json(args.json, payload)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
