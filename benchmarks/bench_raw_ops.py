"""The raw CPU ops, without autograd: the LSTM / RNN backward (median ms and minor
page faults per call, each engine forced beside `auto`) and the Gram forward and
backward against the plain PyTorch code (bmm + divide; (dG + dG^T) * s then bmm),
interleaved, warm-up, medians; prints the CPU model.

    python benchmarks/bench_raw_ops.py [--reps 31] [--rnn 50x16x256x512] [--dtype float32,float64]
                                       [--engines mkl,blas_batch,blas] [--gram 320x6x6,192x6x6,64x128x128]
                                       [--json bench_results/bench_raw_ops.json]

The page-fault column is what the pooled backward temporaries (csrc/cpu/workspace.h)
removed: the backward used to allocate its gate gradients and shifted states anew
on every call.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import cpu_model, environment, interleaved, print_table, write_json  # noqa: E402

from a3ext import ops  # noqa: E402


def faults_per_call(fn, calls: int = 20) -> float:
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def forced(engine, fn):
    def run():
        with ops.gemm_backend(engine):
            fn()
    return run


def rnn_rows(args) -> list[dict]:
    rows = []
    for cell in ("lstm", "rnn"):
        for dname in args.dtype.split(","):
            dtype = getattr(torch, dname)
            for cfg in args.rnn.split(","):
                N, T, D, H = (int(v) for v in cfg.split("x"))
                G = 4 * H if cell == "lstm" else H
                g = torch.Generator().manual_seed(0)
                r = lambda *s, a=0.5: a * torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
                x, h0, Wx, Wh, b, dh = r(N, T, D, a=1.0), r(N, H), r(D, G, a=0.05), r(H, G, a=0.05), r(G), r(N, T, H)
                if cell == "lstm":
                    c0 = torch.zeros_like(h0)
                    h, c, gates = torch.ops.a3ext.lstm_forward(x, h0, c0, Wx, Wh, b)
                    fn = lambda: torch.ops.a3ext.lstm_backward(dh, None, x, h0, c0, Wx, Wh, h, c, gates)  # noqa: E731
                else:
                    h = torch.ops.a3ext.rnn_forward(x, h0, Wx, Wh, b)
                    fn = lambda: torch.ops.a3ext.rnn_backward(dh, x, h0, Wx, Wh, h)  # noqa: E731
                engines = ["auto"] + [e for e in args.engines.split(",") if e in ops.gemm_engines()]
                cases = {e: forced(e, fn) for e in engines}
                t = interleaved(cases, "cpu", args.reps, 3)
                for e in engines:
                    rows.append(dict(op=f"{cell}_backward", dtype=dname, shape=cfg, engine=e, ms=t[e] * 1e3,
                                     faults=faults_per_call(cases[e])))
    return rows


def gram_rows(args) -> list[dict]:
    rows = []
    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname)
        for cfg in args.gram.split(","):
            C, H, W = (int(v) for v in cfg.split("x"))
            F = torch.randn(1, C, H, W, dtype=dtype)
            dG = torch.randn(1, C, C, dtype=dtype)
            s = 1.0 / (C * H * W)
            Fm = F.view(1, C, H * W)
            cases = {
                "a3ext fwd": lambda: torch.ops.a3ext.gram_forward(F, True),
                "bmm fwd": lambda: torch.bmm(Fm, Fm.transpose(1, 2)) / (C * H * W),
                "a3ext bwd": lambda: torch.ops.a3ext.gram_backward(dG, F, True),
                "bmm bwd": lambda: torch.bmm(torch.add(dG, dG.transpose(1, 2)).mul_(s), Fm),
            }
            reps = args.reps * (10 if C * C * H * W < 3e6 else 1)
            t = interleaved(cases, "cpu", reps, 10)
            rows.append(dict(op="gram", dtype=dname, shape=cfg, fwd_us=t["a3ext fwd"] * 1e6,
                             bmm_fwd_us=t["bmm fwd"] * 1e6, bwd_us=t["a3ext bwd"] * 1e6, bmm_bwd_us=t["bmm bwd"] * 1e6))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=31)
    p.add_argument("--rnn", default="50x16x256x512", help="N x T x D x H list")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--engines", default="mkl,blas_batch,blas", help="also time these engines forced")
    p.add_argument("--gram", default="320x6x6,192x6x6,64x128x128", help="C x H x W list (one image)")
    p.add_argument("--json", default="bench_results/bench_raw_ops.json")
    args = p.parse_args(argv)
    print(f"# bench_raw_ops  cpu {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"engines {','.join(ops.gemm_engines())}")
    rnn = rnn_rows(args)
    print_table(rnn, [("op", "op", "s"), ("dtype", "dtype", "s"), ("shape", "N x T x D x H", "s"),
                      ("engine", "engine", "s"), ("ms", "ms", ".2f"), ("faults", "page faults / call", ".0f")])
    print()
    gram = gram_rows(args)
    print_table(gram, [("dtype", "dtype", "s"), ("shape", "C x H x W", "s"), ("fwd_us", "fwd us", ".1f"),
                       ("bmm_fwd_us", "bmm+div us", ".1f"), ("bwd_us", "bwd us", ".1f"),
                       ("bmm_bwd_us", "(dG+dG^T)s, bmm us", ".1f")])
    write_json(args.json, {"environment": environment("cpu"), "rnn": rnn, "gram": gram})
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
