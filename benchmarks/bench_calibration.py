"""What `auto` costs and chooses: the calibration time of every RNN/LSTM shape class
of bench_rnn (issue #16: under 50 ms once per class) and of the Gram classes of
bench_gram, over several runs with a fresh choice table each, and the engines
chosen for the (50,16,256,512) LSTM in fresh processes (whose first class also
pays the libraries' start-up); prints the CPU model.

    python benchmarks/bench_calibration.py [--runs 3] [--processes 5]
                                           [--json bench_results/bench_calibration.json]

Each run calls ops.lstm / ops.rnn forward and backward (autograd) at every bench
shape and dtype and ops.gram at the Gram shapes, so every class calibrates once.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import environment, print_table, write_json  # noqa: E402

from a3ext import ops  # noqa: E402

RNN_SHAPES = [(128, 16, 512, 512), (50, 16, 256, 512), (25, 16, 256, 512), (10, 100, 128, 128)]
GRAM_SHAPES = [(64, 128), (128, 64), (256, 64), (512, 16)]  # C, H = W


def forward_backward(cell: str, N: int, T: int, D: int, H: int, dt: torch.dtype) -> None:
    """One ops.lstm / ops.rnn forward and backward (seeded inputs): calibrates both
    passes' classes if they are new."""
    G = 4 if cell == "lstm" else 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, T, D, dtype=dt, generator=g, requires_grad=True)
    h0 = torch.randn(N, H, dtype=dt, generator=g)
    Wx = (0.05 * torch.randn(D, G * H, dtype=dt, generator=g)).requires_grad_()
    Wh = (0.05 * torch.randn(H, G * H, dtype=dt, generator=g)).requires_grad_()
    b = torch.zeros(G * H, dtype=dt)
    (ops.lstm if cell == "lstm" else ops.rnn)(x, h0, Wx, Wh, b).sum().backward()


def calibrate_every_class() -> dict[str, dict]:
    """One call of every bench class with an empty choice table: the choices made."""
    torch.ops.a3ext._clear_gemm_engine_choices()
    for cell in ("lstm", "rnn"):
        for N, T, D, H in RNN_SHAPES:
            for dt in (torch.float32, torch.float64):
                forward_backward(cell, N, T, D, H, dt)
    for dt in (torch.float32, torch.float64):
        for C, HW in GRAM_SHAPES:
            f = torch.randn(1, C, HW, HW, dtype=dt, requires_grad=True)
            ops.gram(f).sum().backward()
    return ops.gemm_engine_choices()


_FRESH = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from bench_calibration import forward_backward, ops
for dt in (torch.float32, torch.float64):
    forward_backward("lstm", 50, 16, 256, 512, dt)
print(json.dumps({k: [v["engine"], v["calibration_ms"]] for k, v in ops.gemm_engine_choices().items()}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of every class in this process (default 3)")
    ap.add_argument("--processes", type=int, default=5,
                    help="fresh processes calibrating the (50,16,256,512) LSTM (default 5; 0: none)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    env = environment("cpu")
    print(f"# bench_calibration  cpu {env['cpu']}  torch {env['torch']}  threads {env['threads']}  "
          f"engines {','.join(ops.gemm_engines())}")
    runs = [calibrate_every_class() for _ in range(args.runs)]
    rows = []
    for key in sorted(runs[0], key=lambda k: -max(r[k]["calibration_ms"] for r in runs if k in r)):
        ms = [r[key]["calibration_ms"] for r in runs if key in r]
        trial = runs[0][key].get("trial", {})
        rows.append({"class": key, "max_ms": max(ms), "runs_ms": " ".join(f"{v:.1f}" for v in ms),
                     "engines": " ".join(r[key]["engine"] for r in runs if key in r),
                     "rows": trial.get("rows"), "steps": trial.get("steps")})
    print_table(rows, [("class", "shape class", "s"), ("max_ms", "max ms", ".1f"), ("runs_ms", "ms per run", "s"),
                       ("engines", "engine per run", "s"), ("rows", "trial rows", "d"), ("steps", "trial steps", "d")])
    over = [r["class"] for r in rows if r["max_ms"] >= 50]
    print(f"\n{len(rows)} classes; max {max(r['max_ms'] for r in rows):.1f} ms; "
          f"{len(over)} at or over 50 ms{': ' + ', '.join(over) if over else ''}")
    fresh = []
    for i in range(args.processes):
        out = subprocess.run([sys.executable, "-c", _FRESH, os.path.dirname(os.path.abspath(__file__))],
                             capture_output=True, text=True, check=True)
        fresh.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if fresh:
        print(f"\n(50,16,256,512) LSTM in {len(fresh)} fresh processes (engine, calibration ms):")
        for key in sorted(fresh[0]):
            print(f"  {key}: " + "; ".join(f"{p[key][0]} {p[key][1]:.1f}" for p in fresh if key in p))
    if args.json:
        write_json(args.json, {"environment": env, "rows": rows, "fresh_processes": fresh})
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
