"""a3ext.ops.gram vs torch.bmm(F, F^T) / (C*H*W), forward and forward+backward,
interleaved, warm-up, medians, on the feature shapes of a 192, 512 and 1024 px
image through the embedded backbone (EfficientNet-Lite0: every block output,
deduplicated).

    python benchmarks/bench_gram.py [--reps 21] [--dtype float32,float64] [--device cpu|cuda]

Targets (column "fwd target"): on the CPU 1.3x for C >= 64 and H*W >= 1024, else
0.95x; on CUDA (cuBLAS SYRK + mirror against cuBLAS bmm, both float32 in IEEE
precision, CUDA events) 1.3x for C >= 256.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, interleaved, print_table, write_json  # noqa: E402

import a3ext  # noqa: E402,F401
from a3ext import ops  # noqa: E402

# (C, H, W) of EfficientNet-Lite0's stem and block outputs for a square input of
# 192, 512 and 1024 px (strides 2, 2, 4, 4, 8, 8, 16 x 6, 32 x 5).
_STAGES = [(32, 2), (16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (192, 32), (320, 32)]
SHAPES = sorted({(size, C, size // s, size // s) for size in (192, 512, 1024) for C, s in _STAGES})


def baseline(F: torch.Tensor) -> torch.Tensor:
    N, C, H, W = F.shape
    f = F.reshape(N, C, H * W)
    return torch.bmm(f, f.transpose(1, 2)) / (C * H * W)


def target(C: int, HW: int, cuda: bool) -> str:
    """The forward speedup this shape should reach over bmm."""
    if cuda:
        return "1.3x" if C >= 256 else "-"
    return "1.3x" if C >= 64 and HW >= 1024 else "0.95x"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", default="bench_results/bench_gram.json")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("highest")  # bmm in IEEE float32, as the SYRK
    extra = f"  gpu {torch.cuda.get_device_name()}" if cuda else ""
    print(f"# bench_gram  torch {torch.__version__}  threads {torch.get_num_threads()}  device {args.device}{extra}")
    rows, failures = [], []
    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname)
        for size, C, H, W in SHAPES:
            F = torch.randn(1, C, H, W, dtype=dtype, device=args.device)
            Fg = F.clone().requires_grad_()
            dG = torch.randn(1, C, C, dtype=dtype, device=args.device)  # not symmetric
            with torch.no_grad():
                err = ((ops.gram(F) - baseline(F)).abs().max() / baseline(F).abs().max()).item()
            if not err < (1e-5 if dtype == torch.float32 else 1e-12):  # report it, time the other shapes
                failures.append(f"{dname} C={C} HxW={H}x{W}: gram disagrees with bmm: max error {err:.3g}")
                print(f"  SANITY CHECK FAILED: {failures[-1]}", flush=True)
                continue

            def fb(fn):
                def run():
                    torch.autograd.backward(fn(Fg), dG)
                    Fg.grad = None
                return run

            with torch.no_grad():
                t_fwd = interleaved({"a3ext": lambda: ops.gram(F), "bmm": lambda: baseline(F)},
                                    args.device, args.reps, args.warmup)
            t_fb = interleaved({"a3ext": fb(ops.gram), "bmm": fb(baseline)}, args.device, args.reps, args.warmup)
            row = dict(dtype=dname, image=size, shape=f"{C}x{H}x{W}", C=C, HW=H * W,
                       fwd_a3ext_ms=t_fwd["a3ext"] * 1e3, fwd_bmm_ms=t_fwd["bmm"] * 1e3,
                       fwd_speedup=t_fwd["bmm"] / t_fwd["a3ext"],
                       fb_a3ext_ms=t_fb["a3ext"] * 1e3, fb_bmm_ms=t_fb["bmm"] * 1e3,
                       fb_speedup=t_fb["bmm"] / t_fb["a3ext"],
                       target=target(C, H * W, cuda))
            rows.append(row)
            print(f"  {dname} {size}px C={C} HxW={H}x{W}: fwd {row['fwd_speedup']:.2f}x, fwd+bwd {row['fb_speedup']:.2f}x", flush=True)
    print()
    print_table(rows, [
        ("dtype", "dtype", "s"), ("image", "image px", "d"), ("shape", "C x H x W", "s"),
        ("fwd_a3ext_ms", "fwd a3ext ms", ".3f"), ("fwd_bmm_ms", "fwd bmm ms", ".3f"), ("fwd_speedup", "fwd speedup", ".2f"),
        ("fb_a3ext_ms", "fwd+bwd a3ext ms", ".3f"), ("fb_bmm_ms", "fwd+bwd bmm ms", ".3f"), ("fb_speedup", "fwd+bwd speedup", ".2f"),
        ("target", "fwd target", "s"),
    ])
    write_json(args.json, {"environment": environment(args.device), "rows": rows, "failures": failures})
    print(f"\nwrote {args.json}")
    if failures:
        print(f"{len(failures)} sanity check(s) failed:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
