"""Where the time of a float32 LSTM forward goes on the CPU: the a3ext op under
each GEMM engine against torch.nn.LSTM and against its own GEMMs timed alone
(interleaved, warm-up, medians; the CPU model is printed).

    python benchmarks/profile_rnn_cpu.py [--shapes 25x16x256x512,50x16,256x512] [--reps 21]

Columns: "proj" the input projection (N*T x D) @ (D x 4H) as one torch.mm;
"steps" T recurrent GEMMs (N x H) @ (H x 4H) as torch.mm (MKL, unpacked);
"gemms" their sum, a lower bound for any implementation that runs these GEMMs
through torch; the a3ext rows add the pointwise passes and the time loop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, interleaved  # noqa: E402

import a3ext  # noqa: E402,F401
from a3ext import ops  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="25x16x256x512,50x16x256x512,128x16x512x512,10x100x128x128")
    p.add_argument("--reps", type=int, default=21)
    args = p.parse_args(argv)
    print(f"# profile_rnn_cpu  cpu {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"engines {','.join(ops.gemm_engines())}")
    for shape in args.shapes.split(","):
        N, T, D, H = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        x, h0 = torch.randn(N, T, D, generator=g), torch.randn(N, H, generator=g)
        Wx, Wh, b = 0.05 * torch.randn(D, 4 * H, generator=g), 0.05 * torch.randn(H, 4 * H, generator=g), torch.zeros(4 * H)
        x2, out, hs, o2 = x.view(N * T, D), torch.empty(N * T, 4 * H), torch.randn(N, H), torch.empty(N, 4 * H)
        lstm = torch.nn.LSTM(D, H, batch_first=True)

        def proj():
            torch.mm(x2, Wx, out=out)

        def steps():
            for _ in range(T):
                torch.mm(hs, Wh, out=o2)

        def engine(e):
            def run():
                with ops.gemm_backend(e):
                    ops.lstm(x, h0, Wx, Wh, b)
            return run

        cases = {"torch.nn": lambda: lstm(x), "proj": proj, "steps": steps}
        cases.update({f"a3ext[{e}]": engine(e) for e in ["auto"] + ops.gemm_engines()})
        with torch.no_grad():
            t = interleaved(cases, "cpu", args.reps, 3)
        gemms = t["proj"] + t["steps"]
        print(f"lstm float32 fwd {shape}: torch.nn {t['torch.nn'] * 1e3:.2f} ms; GEMMs alone: proj "
              f"{t['proj'] * 1e3:.2f} + steps {t['steps'] * 1e3:.2f} = {gemms * 1e3:.2f} ms "
              f"(torch.nn / gemms {t['torch.nn'] / gemms:.2f})")
        for k, v in t.items():
            if k.startswith("a3ext"):
                print(f"  {k:18s} {v * 1e3:7.2f} ms   vs torch.nn {t['torch.nn'] / v:.2f}x   / gemms {v / gemms:.2f}")


if __name__ == "__main__":
    main()
