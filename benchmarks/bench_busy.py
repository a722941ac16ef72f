"""Does a3ext collapse when the machine is busy? (issue 14, section 3)

The workload: ``--steps`` (25) captioning LSTM training steps (N 50, T 16, H 512, input
512, word vectors 256, vocabulary 1004, Adam) plus a Gram-matrix forward and backward
(1 x 128 x 64 x 64) each, float32, on all cores, built two ways: on a3ext
(``CaptioningRNN`` + ``a3ext.ops.gram``) and on plain ``torch.nn`` (``nn.LSTM`` +
``bmm``).

Each timing runs in a fresh Python process (the OpenMP runtime reads its settings once,
when torch loads), after ``--warmup`` untimed steps. Every configuration is timed
``quiet`` and ``busy`` (beside ONE single-threaded busy process this script starts, a
pure-Python loop, and kills after the timing); configurations and conditions take turns
in every repetition so machine noise hits all alike; the medians are reported, with the
worker's CPU seconds (more CPU for the same work means threads spinning) and the fastest
single step (the least disturbed one: on a machine shared with other work, the closest
to a quiet-machine figure).

Configurations (``--configs``):

* ``a3ext``: a script that imports a3ext first (what the a3ext CLI and demo do): a3ext
  sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already has a policy.
* ``a3ext-torch-first``: imports torch before a3ext with nothing set, i.e. OpenMP's
  default spin-waiting (what a3ext did before the fix).
* ``torch.nn`` / ``torch.nn-spin``: the plain torch.nn model, torch imported with
  ``OMP_WAIT_POLICY=PASSIVE`` set / with nothing set.
* ``a3ext-spin=N``: a3ext first with ``GOMP_SPINCOUNT=N`` (exploring a bounded spin).

Run:  python benchmarks/bench_busy.py [--reps 5] [--configs a3ext,a3ext-torch-first]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BUSY_LOOP = "while True:\n    pass\n"
DEFAULT_CONFIGS = "a3ext,a3ext-torch-first,torch.nn,torch.nn-spin"


# --------------------------------------------------------------------------- worker

def _worker(impl: str, import_order: str, steps: int, warmup: int) -> dict:
    if import_order == "torch-first":
        import torch  # noqa: F401  (libgomp initialises with whatever the environment says)
    if impl == "a3ext":
        import a3ext  # noqa: F401
    import torch

    torch.manual_seed(0)
    N, T, D, W, H, V = 50, 16, 512, 256, 512, 1004
    features = torch.randn(N, D)
    captions = torch.randint(1, V, (N, T + 1))
    fmap = torch.randn(1, 128, 64, 64, requires_grad=True)
    if impl == "a3ext":
        from a3ext.captioning.model import CaptioningRNN
        from a3ext.ops import gram

        words = {"<NULL>": 0, "<START>": 1, "<END>": 2, **{f"w{i}": i for i in range(3, V)}}
        model = CaptioningRNN(words, D, W, H, "lstm")
        params = list(model.parameters())

        def loss_fn():
            return model.loss(features, captions)
    else:
        import torch.nn.functional as F

        emb = torch.nn.Embedding(V, W)
        proj, vocab = torch.nn.Linear(D, H), torch.nn.Linear(H, V)
        lstm = torch.nn.LSTM(W, H, batch_first=True)
        params = [*emb.parameters(), *proj.parameters(), *vocab.parameters(), *lstm.parameters()]

        def loss_fn():
            h0 = proj(features).unsqueeze(0)
            h, _ = lstm(emb(captions[:, :-1]), (h0, torch.zeros_like(h0)))
            scores = vocab(h)
            return F.cross_entropy(scores.flatten(0, 1), captions[:, 1:].flatten(), ignore_index=0,
                                   reduction="sum") / N

        def gram(x):
            f = x.flatten(2)
            return torch.bmm(f, f.transpose(1, 2)) / f.shape[-1]

    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        gram(fmap).square().sum().backward()

    for _ in range(warmup):
        step()
    cpu0, t0 = time.process_time(), time.perf_counter()
    step_s = []
    for _ in range(steps):
        s0 = time.perf_counter()
        step()
        step_s.append(time.perf_counter() - s0)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu0, "min_step_s": min(step_s),
            "threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT")}


# --------------------------------------------------------------------------- parent

def _config(name: str) -> tuple[str, str, dict]:
    """(impl, import order, environment changes) of a configuration."""
    clean = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    if name == "a3ext":
        return "a3ext", "a3ext-first", clean
    if name == "a3ext-torch-first":
        return "a3ext", "torch-first", clean
    if name == "torch.nn":
        return "torch", "torch-first", {**clean, "OMP_WAIT_POLICY": "PASSIVE"}
    if name == "torch.nn-spin":
        return "torch", "torch-first", clean
    if name.startswith("a3ext-spin="):
        return "a3ext", "a3ext-first", {**clean, "GOMP_SPINCOUNT": name.split("=", 1)[1]}
    raise SystemExit(f"bench_busy: unknown configuration {name!r}")


def _run_worker(name: str, steps: int, warmup: int) -> dict:
    impl, order, changes = _config(name)
    env = dict(os.environ)
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, order, str(steps), str(warmup)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _cpu_model() -> str:
    # imported here, not at the top: the worker processes must control when torch loads
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import cpu_model

    return cpu_model()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    load0 = os.getloadavg()
    print(f"CPU: {_cpu_model()}, {os.cpu_count()} logical CPUs; python {platform.python_version()}; "
          f"load average before: {load0[0]:.2f}")
    print(f"{args.steps} steps (LSTM N 50, T 16, H 512, Adam + Gram 128x64x64), {args.reps} interleaved reps")
    samples = {(c, cond): [] for c in configs for cond in ("quiet", "busy")}
    cpu = {k: [] for k in samples}
    fastest = {k: [] for k in samples}
    for rep in range(args.reps):
        for c in configs:
            for cond in ("quiet", "busy") if rep % 2 == 0 else ("busy", "quiet"):
                busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if cond == "busy" else None
                try:
                    r = _run_worker(c, args.steps, args.warmup)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                samples[(c, cond)].append(r["wall_s"])
                cpu[(c, cond)].append(r["cpu_s"])
                fastest[(c, cond)].append(r["min_step_s"])
                print(f"  rep {rep + 1} {c:>20} {cond:>5}: {r['wall_s']:7.2f} s wall, {r['cpu_s']:7.2f} s CPU, "
                      f"fastest step {1e3 * r['min_step_s']:6.1f} ms", flush=True)
    print(f"\n{'configuration':>20} | {'quiet s':>8} | {'busy s':>8} | {'busy/quiet':>10} | "
          f"{'CPU s quiet/busy':>17} | {'fastest step ms quiet/busy':>26}")
    rows = []
    for c in configs:
        q, b = statistics.median(samples[(c, "quiet")]), statistics.median(samples[(c, "busy")])
        cq, cb = statistics.median(cpu[(c, "quiet")]), statistics.median(cpu[(c, "busy")])
        fq, fb = min(fastest[(c, "quiet")]), min(fastest[(c, "busy")])
        rows.append({"config": c, "quiet_s": q, "busy_s": b, "slowdown": b / q, "cpu_quiet_s": cq, "cpu_busy_s": cb,
                     "fastest_step_quiet_s": fq, "fastest_step_busy_s": fb,
                     "quiet_samples": samples[(c, "quiet")], "busy_samples": samples[(c, "busy")]})
        print(f"{c:>20} | {q:8.2f} | {b:8.2f} | {b / q:9.2f}x | {cq:7.1f} / {cb:7.1f} | "
              f"{1e3 * fq:11.1f} / {1e3 * fb:11.1f}")
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} (other processes on this machine add noise to both columns)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": _cpu_model(), "cpus": os.cpu_count(), "steps": args.steps, "reps": args.reps,
                       "load_before": load0[0], "load_after": load1[0], "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
        sys.exit(0)
    sys.exit(main())
