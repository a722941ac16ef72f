"""Wall time of one style transfer: 192 px content image (shorter side), 200 iterations of
the assignment's Adam schedule, on the default backbone (EfficientNet-Lite0) and preset
(``starry_night``). Target: under 60 s on a 2-core machine.

    python benchmarks/bench_style.py [--preset starry_night] [--size 192] [--iters 200]
                                     [--optimizer adam|lbfgs] [--threads N]
                                     [--json bench_results/bench_style.json]

Prints the wall time, seconds per iteration and the final loss, and writes them as JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, write_json  # noqa: E402

from a3ext import style  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="starry_night", choices=sorted(style.PRESETS))
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--optimizer", default="adam", choices=("adam", "lbfgs"))
    p.add_argument("--repeats", type=int, default=1, help="timed runs (the median is reported)")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads (default 0: torch's default, one per core). On a shared, "
                        "oversubscribed machine 1 thread can be many times faster than 2 (spinning "
                        "OpenMP threads)")
    p.add_argument("--json", default="bench_results/bench_style.json")
    args = p.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cnn = style.default_cnn()
    # warm-up: load the images and weights, first-call allocations
    style.run_preset(args.preset, cnn, image_size=args.size, num_iterations=2, progress=False)
    times, result = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = style.run_preset(args.preset, cnn, image_size=args.size, num_iterations=args.iters,
                                  optimizer=args.optimizer, progress=False)
        times.append(time.perf_counter() - t0)
    wall = sorted(times)[len(times) // 2]
    h, w = result.image.shape[2:]
    row = {"preset": args.preset, "backbone": result.settings["backbone"], "optimizer": args.optimizer,
           "image_hw": [int(h), int(w)], "iterations": args.iters, "wall_s": wall,
           "s_per_iteration": wall / args.iters, "all_wall_s": times,
           "final_loss": result.history["total"][-1], "target_s": 60.0, "meets_target": wall < 60.0,
           "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    print(f"style transfer {args.preset} ({result.settings['backbone']}, {args.optimizer}): {h}x{w} px, "
          f"{args.iters} iterations: {wall:.1f} s ({1e3 * wall / args.iters:.0f} ms/iteration), "
          f"final loss {row['final_loss']:.4g}; target < 60 s: {'met' if row['meets_target'] else 'NOT met'} "
          f"(load average {row['load_average'][0]:.1f}, {torch.get_num_threads()} threads)")
    write_json(args.json, {"environment": environment("cpu"), "results": [row]})
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
