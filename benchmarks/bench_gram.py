"""a3ext.ops.gram vs torch.bmm(F, F^T) / (C*H*W), forward and forward+backward,
interleaved, warm-up, medians, on the feature shapes of a 192, 512 and 1024 px
image through the embedded backbone (EfficientNet-Lite0: every block output,
deduplicated).

    python benchmarks/bench_gram.py [--reps 21] [--dtype float32,float64] [--device cpu|cuda]
                                    [--shapes 64x128x128,128x64x64,256x64x64] [--engines blas,onednn,mkl]

--shapes replaces the backbone shapes (C x H x W, one image); --engines adds a
column per CPU engine forced (the a3ext column is `auto`, the engine it measured
fastest for the shape, printed in column "engine").

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
from common import cpu_model, environment, interleaved, print_table, write_json  # noqa: E402

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


def auto_engine(dname: str, C: int, HW: int) -> str:
    """The engine `auto` chose for the Gram forward of this shape."""
    key = f"gram_fwd {'Float' if dname == 'float32' else 'Double'} C{C} M{1 << max(0, (HW - 1).bit_length())}"
    return ops.gemm_engine_choices().get(key, {}).get("engine", "blas")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", default="bench_results/bench_gram.json")
    p.add_argument("--shapes", default=None, help="C x H x W list, e.g. 64x128x128,128x64x64,256x64x64")
    p.add_argument("--engines", default="", help="CPU: also time these engines forced, e.g. blas,onednn,mkl")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("highest")  # bmm in IEEE float32, as the SYRK
    extra = f"  gpu {torch.cuda.get_device_name()}" if cuda else ""
    engines = [e for e in args.engines.split(",") if e and e in ops.gemm_engines()] if not cuda else []
    shapes = SHAPES if not args.shapes else [
        (0, *(int(v) for v in c.split("x"))) for c in args.shapes.split(",")]
    print(f"# bench_gram  cpu {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"device {args.device}  engines {','.join(ops.gemm_engines())}{extra}")
    rows, failures = [], []
    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname)
        for size, C, H, W in shapes:
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

            def forced(e, fn):
                def run():
                    with ops.gemm_backend(e):
                        fn()
                return run

            with torch.no_grad():
                cases = {"a3ext": lambda: ops.gram(F), "bmm": lambda: baseline(F)}
                cases.update({e: forced(e, lambda: ops.gram(F)) for e in engines})
                t_fwd = interleaved(cases, args.device, args.reps, args.warmup)
            t_fb = interleaved({"a3ext": fb(ops.gram), "bmm": fb(baseline)}, args.device, args.reps, args.warmup)
            row = dict(dtype=dname, image=size, shape=f"{C}x{H}x{W}", C=C, HW=H * W,
                       fwd_a3ext_ms=t_fwd["a3ext"] * 1e3, fwd_bmm_ms=t_fwd["bmm"] * 1e3,
                       fwd_speedup=t_fwd["bmm"] / t_fwd["a3ext"],
                       fb_a3ext_ms=t_fb["a3ext"] * 1e3, fb_bmm_ms=t_fb["bmm"] * 1e3,
                       fb_speedup=t_fb["bmm"] / t_fb["a3ext"],
                       target=target(C, H * W, cuda), engine=None if cuda else auto_engine(dname, C, H * W),
                       **{f"fwd_{e}": t_fwd["bmm"] / t_fwd[e] for e in engines})
            rows.append(row)
            print(f"  {dname} {size}px C={C} HxW={H}x{W}: fwd {row['fwd_speedup']:.2f}x, fwd+bwd {row['fb_speedup']:.2f}x", flush=True)
    print()
    print_table(rows, [
        ("dtype", "dtype", "s"), ("image", "image px", "d"), ("shape", "C x H x W", "s"),
        ("fwd_a3ext_ms", "fwd a3ext ms", ".3f"), ("fwd_bmm_ms", "fwd bmm ms", ".3f"), ("fwd_speedup", "fwd speedup", ".2f"),
        ("fb_a3ext_ms", "fwd+bwd a3ext ms", ".3f"), ("fb_bmm_ms", "fwd+bwd bmm ms", ".3f"), ("fb_speedup", "fwd+bwd speedup", ".2f"),
        ("target", "fwd target", "s"), *([("engine", "auto engine", "s")] if not cuda else []),
        *[(f"fwd_{e}", f"fwd {e}", ".2f") for e in engines],
    ])
    if not cuda:
        print(f"\ncpu {cpu_model()}; auto's Gram choices (trial ms per engine):")
        for key, c in sorted(ops.gemm_engine_choices().items()):
            if key.startswith("gram"):
                trials = ", ".join(f"{e} {ms:.3f}" for e, ms in c["trial_ms"].items())
                print(f"  {key}: {c['engine']}  (calibration {c['calibration_ms']:.1f} ms; {trials})")
    write_json(args.json, {"environment": environment(args.device), "rows": rows, "failures": failures})
    print(f"\nwrote {args.json}")
    if failures:
        print(f"{len(failures)} sanity check(s) failed:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
