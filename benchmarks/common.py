"""Benchmark harness shared by the scripts in benchmarks/: interleaved timing with
warm-up and medians, a GEMM-rate probe for FLOP floors, and table/JSON output."""
from __future__ import annotations

import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_once(fn: Callable[[], object], device: str) -> float:
    """Seconds for one call (CUDA events on the GPU, perf_counter on the CPU)."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(cases: dict[str, Callable[[], object]], device: str, reps: int, warmup: int) -> dict[str, float]:
    """Median seconds per case; the cases take turns in every repetition so that
    machine noise (turbo, other processes) hits all of them alike, in an order
    shuffled anew each repetition (seeded, so a run repeats): in a fixed order each
    case always follows the same neighbour, whose cache footprint it inherits -- the
    RNN bench's `auto` column, timed right after the forced engines' runs of the same
    op, measured 5-25 % faster than the very same engine forced."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(0).shuffle
    for _ in range(reps):
        shuffle(order)
        for name in order:
            samples[name].append(time_once(cases[name], device))
    return {name: statistics.median(v) for name, v in samples.items()}


def gemm_rate(dtype: torch.dtype, device: str, n: int = 1024, reps: int = 10) -> float:
    """Measured FLOP/s of one large square matmul (the GEMM floor's rate)."""
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    t = interleaved({"mm": lambda: torch.mm(a, b)}, device, reps=reps, warmup=2)["mm"]
    return 2.0 * n**3 / t


def cpu_model() -> str:
    """The CPU's model name (every benchmark table prints it: results depend on it)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict:
    env = {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    return env


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format)."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([("{:" + f + "}").format(r[k]) if r.get(k) is not None else "-" for k, _, f in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for j, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def write_json(path: str | os.PathLike, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
