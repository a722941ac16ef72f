"""a3ext RNN/LSTM ops vs torch.nn.LSTM / torch.nn.RNN, the assignment's per-step
PyTorch composite, and the GEMM floor; interleaved, warm-up, medians.

    python benchmarks/bench_rnn.py [--reps 15] [--cell lstm,rnn] [--dtype float32,float64]
                                   [--device cpu|cuda] [--json bench_results/bench_rnn.json]

The GEMM floor is the op's FLOP count (forward 2*N*T*(D+H)*G*H with G = 4 for
the LSTM and 1 for the RNN; forward+backward 3x that) at the rate of a
1024x1024x1024 torch.mm (4096 on CUDA; the BLAS sgemm/dgemm rate), timed
interleaved with the cases of every row so that it sees the same machine state.

On CUDA, float32 GEMMs run in full IEEE precision (torch's default, set
explicitly here), and torch.nn (cuDNN) is timed twice: in IEEE precision (the
fair comparison, column "torch.nn") and with cuDNN's default TF32 tensor-core math
("torch.nn TF32"). The sanity check that the implementations agree runs in IEEE
precision: TF32 (10-bit mantissa) is far outside its 1e-4 tolerance. CUDA timings
are CUDA events around each call.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, environment, interleaved, print_table, write_json  # noqa: E402

import a3ext  # noqa: E402,F401
from a3ext import ops  # noqa: E402

CONFIGS = [(25, 16, 256, 512), (50, 16, 256, 512), (128, 16, 512, 512), (10, 100, 128, 128)]
# the GPU targets (N, T, D, H)
CUDA_CONFIGS = [(64, 50, 512, 512), (128, 100, 1024, 1024), (32, 200, 256, 256)]


@contextlib.contextmanager
def cudnn_tf32(enabled: bool):
    """cuDNN's TF32 math on or off (torch's default: on) for the duration."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = old


def torch_gate_order(W: torch.Tensor, H: int) -> torch.Tensor:
    """Columns [i f o g] (a3ext, the assignment) -> [i f g o] (torch.nn.LSTM)."""
    i, f, o, g = W.split(H, dim=-1)
    return torch.cat([i, f, g, o], dim=-1)


def per_step_composite(cell, x, h0, Wx, Wh, b):
    """The assignment's layer written naively in PyTorch: one Python step per time step."""
    N, T, _ = x.shape
    H = h0.shape[1]
    prev_h, prev_c, hs = h0, torch.zeros_like(h0), []
    for t in range(T):
        a = x[:, t] @ Wx + prev_h @ Wh + b
        if cell == "rnn":
            prev_h = torch.tanh(a)
        else:
            i, f, o, g = a[:, :H].sigmoid(), a[:, H:2 * H].sigmoid(), a[:, 2 * H:3 * H].sigmoid(), a[:, 3 * H:].tanh()
            prev_c = f * prev_c + i * g
            prev_h = o * torch.tanh(prev_c)
        hs.append(prev_h)
    return torch.stack(hs, dim=1)


def forced(engine, f):
    """f run with the GEMM engine forced (a3ext.ops.gemm_backend)."""
    def run():
        with ops.gemm_backend(engine):
            f()
    return run


def make_cases(cell, N, T, D, H, dtype, device, backward, engines=()):
    G = 4 if cell == "lstm" else 1
    gen = torch.Generator().manual_seed(0)
    def r(*s, scale=0.1):
        return (scale * torch.randn(*s, generator=gen, dtype=dtype)).to(device)
    x, h0 = r(N, T, D, scale=1.0), r(N, H, scale=1.0)
    Wx, Wh, b = r(D, G * H), r(H, G * H), r(G * H)
    dh = r(N, T, H, scale=1.0)
    if cell == "lstm":
        mod = torch.nn.LSTM(D, H, batch_first=True).to(device=device, dtype=dtype)
        conv = lambda W: torch_gate_order(W, H)  # noqa: E731
    else:
        mod = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True).to(device=device, dtype=dtype)
        conv = lambda W: W  # noqa: E731
    with torch.no_grad():
        mod.weight_ih_l0.copy_(conv(Wx).t())
        mod.weight_hh_l0.copy_(conv(Wh).t())
        mod.bias_ih_l0.copy_(conv(b))
        mod.bias_hh_l0.zero_()
    leaves = [t.requires_grad_(backward) for t in (x, h0, Wx, Wh, b)]
    h0_3 = h0.detach().unsqueeze(0).requires_grad_(backward)
    c0_3 = torch.zeros_like(h0_3)
    for p in mod.parameters():
        p.requires_grad_(backward)

    a3 = (lambda: ops.lstm(*leaves)) if cell == "lstm" else (lambda: ops.rnn(*leaves))
    if cell == "lstm":
        tn = lambda: mod(x, (h0_3, c0_3))[0]  # noqa: E731
    else:
        tn = lambda: mod(x, h0_3)[0]  # noqa: E731
    comp = lambda: per_step_composite(cell, *leaves)  # noqa: E731

    # sanity: the three implementations agree before anything is timed (in IEEE
    # precision: cuDNN's default TF32 would be ~1e-3 off)
    with torch.no_grad(), cudnn_tf32(False):
        ref = comp()
        for name, f in (("a3ext", a3), ("torch.nn", tn)):
            err = (f() - ref).abs().max().item()
            tol = 1e-4 if dtype == torch.float32 else 1e-10
            if err > tol:
                raise AssertionError(f"{name} {cell} disagrees with the composite: max error {err}")

    def wrap(f):
        if not backward:
            def run():
                with torch.no_grad():
                    f()
        else:
            def run():
                f().backward(dh)
                for t in leaves + [h0_3] + list(mod.parameters()):
                    t.grad = None
        return run

    n = gemm_size(device)
    big_a = torch.randn(n, n, dtype=dtype, device=device)
    big_b = torch.randn(n, n, dtype=dtype, device=device)
    cases = {"a3ext": wrap(a3), "torch.nn": wrap(tn), "composite": wrap(comp), "gemm": lambda: torch.mm(big_a, big_b)}
    for e in engines:  # each CPU engine forced, beside `auto` (column "a3ext")
        cases[f"a3ext[{e}]"] = forced(e, wrap(a3))
    if device == "cuda":
        # cuDNN: IEEE ("torch.nn") and its default TF32 math ("torch.nn TF32")
        ieee, tf32 = wrap(tn), wrap(tn)

        def tn_ieee():
            with cudnn_tf32(False):
                ieee()

        def tn_tf32():
            with cudnn_tf32(True):
                tf32()
        cases["torch.nn"], cases["torch.nn TF32"] = tn_ieee, tn_tf32
    return cases


def auto_engine(cell, dname, N, T, D, H, backward) -> str:
    """The engine `auto` chose for the forward (and backward) of this shape."""
    choices = ops.gemm_engine_choices()
    cls = 1 << max(0, (N - 1).bit_length())
    out = []
    for p in ("fwd", "bwd") if backward else ("fwd",):
        key = f"{cell}_{p} {'Float' if dname == 'float32' else 'Double'} N{cls} T{1 << max(0, (T - 1).bit_length())} D{D} H{H}"
        out.append(choices.get(key, {}).get("engine", "blas"))
    return "/".join(out)


def gemm_size(device: str) -> int:
    return 4096 if device == "cuda" else 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cell", default="lstm,rnn")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--configs", default=None, help="e.g. 50x16x256x512,10x100x128x128")
    p.add_argument("--json", default="bench_results/bench_rnn.json")
    p.add_argument("--engines", default="", help="CPU: also time these engines forced, e.g. blas,onednn,mkl "
                   "(the a3ext column is `auto`, the engine it measured fastest)")
    args = p.parse_args(argv)
    default = CUDA_CONFIGS if args.device == "cuda" else CONFIGS
    configs = default if not args.configs else [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    cuda = args.device == "cuda"
    if cuda:
        torch.set_float32_matmul_precision("highest")  # cuBLAS float32 in IEEE precision (a3ext, composite)

    rows, failures = [], []
    extra = (f"  gpu {torch.cuda.get_device_name()}  cudnn {torch.backends.cudnn.version()}  "
             f"float32 matmul precision {torch.get_float32_matmul_precision()}") if cuda else ""
    engines = [e for e in args.engines.split(",") if e] if not cuda else []
    print(f"# bench_rnn  cpu {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"device {args.device}  a3ext pointwise ISA {ops.cpu_isa()}  engines {','.join(ops.gemm_engines())}"
          f"{extra}")
    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname)
        for cell in args.cell.split(","):
            G = 4 if cell == "lstm" else 1
            for (N, T, D, H) in configs:
                for backward in (False, True):
                    try:
                        cases = make_cases(cell, N, T, D, H, dtype, args.device, backward, engines)
                    except AssertionError as e:  # report it, time the other rows (one GPU run must show all)
                        failures.append(f"{cell} {dname} {N}x{T}x{D}x{H} {'fwd+bwd' if backward else 'fwd'}: {e}")
                        print(f"  SANITY CHECK FAILED: {failures[-1]}", flush=True)
                        continue
                    t = interleaved(cases, args.device, args.reps, args.warmup)
                    rate = 2.0 * gemm_size(args.device) ** 3 / t["gemm"]
                    flops = 2.0 * N * T * (D + H) * G * H * (3 if backward else 1)
                    floor = flops / rate
                    row = dict(
                        cell=cell, dtype=dname, shape=f"{N}x{T}x{D}x{H}",
                        pass_="fwd+bwd" if backward else "fwd",
                        a3ext_ms=t["a3ext"] * 1e3, torch_ms=t["torch.nn"] * 1e3,
                        torch_tf32_ms=t["torch.nn TF32"] * 1e3 if "torch.nn TF32" in t else None,
                        composite_ms=t["composite"] * 1e3, floor_ms=floor * 1e3,
                        vs_torch=t["torch.nn"] / t["a3ext"],
                        vs_torch_tf32=t["torch.nn TF32"] / t["a3ext"] if "torch.nn TF32" in t else None,
                        vs_composite=t["composite"] / t["a3ext"],
                        over_floor=t["a3ext"] / floor, gemm_gflops=rate / 1e9,
                        engine=auto_engine(cell, dname, N, T, D, H, backward) if not cuda else None,
                        **{f"vs_torch_{e}": t["torch.nn"] / t[f"a3ext[{e}]"] for e in engines},
                    )
                    rows.append(row)
                    tf32 = f", torch.nn TF32 {row['torch_tf32_ms']:.2f} ms" if cuda else ""
                    print(f"  {cell} {dname} {row['shape']} {row['pass_']}: a3ext {row['a3ext_ms']:.2f} ms, "
                          f"torch.nn {row['torch_ms']:.2f} ms{tf32}, composite {row['composite_ms']:.2f} ms, "
                          f"floor {row['floor_ms']:.2f} ms", flush=True)
    print()
    tf32_cols = [("torch_tf32_ms", "torch.nn TF32 ms", ".2f")] if cuda else []
    tf32_speedup = [("vs_torch_tf32", "speedup vs TF32", ".2f")] if cuda else []
    print_table(rows, [
        ("cell", "cell", "s"), ("dtype", "dtype", "s"), ("shape", "N x T x D x H", "s"), ("pass_", "pass", "s"),
        ("a3ext_ms", "a3ext ms", ".2f"), ("torch_ms", "torch.nn ms", ".2f"), *tf32_cols,
        ("composite_ms", "composite ms", ".2f"),
        ("floor_ms", "GEMM floor ms", ".2f"), ("vs_torch", "speedup vs torch.nn", ".2f"), *tf32_speedup,
        ("vs_composite", "speedup vs composite", ".2f"), ("over_floor", "a3ext / floor", ".2f"),
        ("gemm_gflops", "GEMM GFLOP/s", ".0f"),
        *([("engine", "auto engine", "s")] if not cuda else []),
        *[(f"vs_torch_{e}", f"{e} vs torch.nn", ".2f") for e in engines],
    ])
    print(f"\ncpu {cpu_model()}; auto's choices (trial ms per engine):")
    for key, c in sorted(ops.gemm_engine_choices().items()):
        trials = ", ".join(f"{e} {ms:.2f}" for e, ms in c["trial_ms"].items())
        print(f"  {key}: {c['engine']}  (calibration {c['calibration_ms']:.1f} ms; {trials})")
    write_json(args.json, {"environment": environment(args.device), "rows": rows, "failures": failures})
    print(f"\nwrote {args.json}")
    if failures:
        print(f"{len(failures)} sanity check(s) failed:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
