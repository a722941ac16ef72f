"""`a3ext selftest`: run every compiled op once on random data against the float64
numpy reference (forward and every gradient) and print a table. Builds nothing.

May import: ``a3ext.ops``, ``a3ext.reference``; outside a3ext: numpy, torch.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from . import ops
from . import reference as ref

# Same tolerances as the test suite: float64 elementwise relative error (the
# assignment's rel_error); float32 error relative to the largest reference value.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def relative_error(got: torch.Tensor, want: np.ndarray, dtype: torch.dtype) -> float:
    got = got.detach().to(torch.float64).numpy()
    want = np.asarray(want, dtype=np.float64)
    if want.size == 0:
        return 0.0
    if dtype == torch.float32:
        return float(np.max(np.abs(got - want)) / max(1e-8, float(np.max(np.abs(want)))))
    return ref.rel_error(got, want)


def _case_rnn(g: torch.Generator, dtype, step: bool):
    N, T, D, H = 4, 1 if step else 6, 5, 7
    x, h0 = torch.randn(N, T, D, generator=g, dtype=torch.float64), torch.randn(N, H, generator=g, dtype=torch.float64)
    Wx, Wh, b = (0.3 * torch.randn(*s, generator=g, dtype=torch.float64) for s in ((D, H), (H, H), (H,)))
    args = [t.to(dtype).requires_grad_() for t in (x[:, 0] if step else x, h0, Wx, Wh, b)]
    out = ops.rnn_step(*args) if step else ops.rnn(*args)
    np_args = [t.detach().double().numpy() for t in args]
    want, cache = (ref.rnn_step_forward if step else ref.rnn_forward)(*np_args)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out, args, up.to(dtype))
    want_grads = (ref.rnn_step_backward if step else ref.rnn_backward)(up.numpy(), cache)
    return f"{N}x{T}x{D}x{H}", [(out, want)], list(zip(grads, want_grads))


def _case_lstm(g: torch.Generator, dtype, step: bool):
    N, T, D, H = 4, 1 if step else 6, 5, 7
    x, h0, c0 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((N, T, D), (N, H), (N, H)))
    Wx, Wh, b = (0.3 * torch.randn(*s, generator=g, dtype=torch.float64) for s in ((D, 4 * H), (H, 4 * H), (4 * H,)))
    if step:
        args = [t.to(dtype).requires_grad_() for t in (x[:, 0], h0, c0, Wx, Wh, b)]
        nh, nc = ops.lstm_step(*args)
        np_args = [t.detach().double().numpy() for t in args]
        wh, wc, cache = ref.lstm_step_forward(*np_args)
        uh, uc = (torch.randn(N, H, generator=g, dtype=torch.float64) for _ in range(2))
        grads = torch.autograd.grad((nh, nc), args, (uh.to(dtype), uc.to(dtype)))
        want_grads = ref.lstm_step_backward(uh.numpy(), uc.numpy(), cache)
        return f"{N}x1x{D}x{H}", [(nh, wh), (nc, wc)], list(zip(grads, want_grads))
    args = [t.to(dtype).requires_grad_() for t in (x, h0, Wx, Wh, b)]
    out = ops.lstm(*args)
    want, cache = ref.lstm_forward(*[t.detach().double().numpy() for t in args])
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out, args, up.to(dtype))
    return f"{N}x{T}x{D}x{H}", [(out, want)], list(zip(grads, ref.lstm_backward(up.numpy(), cache)))


def _case_packed(g: torch.Generator, dtype, lstm: bool):
    """rnn_packed / lstm_packed on sequences of lengths 4, 6, 1, 4 (packed in the order
    pack_lengths sorts them, h0 too) against the reference run on each sequence alone
    (its own T), gradients summed over the sequences."""
    lengths, D, H = [4, 6, 1, 4], 5, 7
    B, T, G = len(lengths), max(lengths), (4 if lstm else 1) * H
    x, h0 = torch.randn(B, T, D, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64)
    Wx, Wh, b = (0.3 * torch.randn(*s, generator=g, dtype=torch.float64) for s in ((D, G), (H, G), (G,)))
    order, batch_sizes, index = ops.pack_lengths(lengths)
    args = [t.to(dtype).requires_grad_() for t in (x.reshape(B * T, D)[index], h0[order], Wx, Wh, b)]
    xp, h0t, Wxt, Wht, bt = args
    out = (ops.lstm_packed if lstm else ops.rnn_packed)(xp, batch_sizes, h0t, Wxt, Wht, bt)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(out, args, up.to(dtype))
    np64 = [t.detach().double().numpy() for t in args]
    want = np.zeros(out.shape)
    want_grads = [np.zeros(a.shape) for a in np64]
    rows, slot = index.numpy(), {int(n): p for p, n in enumerate(order)}  # sequence n's h0 is row slot[n]
    for n in range(B):  # packed rows of sequence n (index holds padded row n * T + t), in time order
        r = np.flatnonzero((rows // T) == n)
        r = r[np.argsort(rows[r] % T)]
        seq_args = (np64[0][r][None], np64[1][slot[n]:slot[n] + 1], np64[2], np64[3], np64[4])
        h, cache = (ref.lstm_forward if lstm else ref.rnn_forward)(*seq_args)
        want[r] = h[0]
        dx, dh0, dWx, dWh, db = (ref.lstm_backward if lstm else ref.rnn_backward)(up.numpy()[r][None], cache)
        want_grads[0][r] = dx[0]
        want_grads[1][slot[n]] = dh0[0]
        for k, d in ((2, dWx), (3, dWh), (4, db)):
            want_grads[k] += d
    return f"{B}x{T}x{D}x{H} packed", [(out, want)], list(zip(grads, want_grads))


def _case_gram(g: torch.Generator, dtype, big: bool = False):
    N, C, Hh, W = (1, 64, 32, 32) if big else (2, 5, 3, 4)
    f = torch.randn(N, C, Hh, W, generator=g, dtype=torch.float64)
    x = f.to(dtype).requires_grad_()
    out = ops.gram(x)
    F = x.detach().double().numpy().reshape(N, C, Hh * W)
    s = 1.0 / (C * Hh * W)
    want = s * F @ F.transpose(0, 2, 1)
    up = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(out, (x,), up.to(dtype))
    dG = up.numpy()
    want_grad = (s * (dG + dG.transpose(0, 2, 1)) @ F).reshape(N, C, Hh, W)
    return f"{N}x{C}x{Hh}x{W} (N C H W)", [(out, want)], [(grad, want_grad)]


CASES: dict[str, Callable] = {
    "rnn": lambda g, dt: _case_rnn(g, dt, step=False),
    "rnn_step": lambda g, dt: _case_rnn(g, dt, step=True),
    "lstm": lambda g, dt: _case_lstm(g, dt, step=False),
    "lstm_step": lambda g, dt: _case_lstm(g, dt, step=True),
    "rnn_packed": lambda g, dt: _case_packed(g, dt, lstm=False),
    "lstm_packed": lambda g, dt: _case_packed(g, dt, lstm=True),
    "gram": _case_gram,
    "gram_blocked": lambda g, dt: _case_gram(g, dt, big=True),
}


def run(seed: int = 0, verbose: bool = True) -> bool:
    """Run every case; print a table; return True when all pass."""
    g = torch.Generator().manual_seed(seed)
    rows, ok_all = [], True
    for name, case in CASES.items():
        for dtype in (torch.float64, torch.float32):
            t0 = time.perf_counter()
            shape, outs, grads = case(g, dtype)
            ms = (time.perf_counter() - t0) * 1e3
            fwd = max(relative_error(o, w, dtype) for o, w in outs)
            bwd = max(relative_error(gr, w, dtype) for gr, w in grads)
            ok = fwd <= TOLERANCE[dtype] and bwd <= TOLERANCE[dtype]
            ok_all &= ok
            rows.append((name, str(dtype).replace("torch.", ""), shape, f"{fwd:.1e}", f"{bwd:.1e}",
                         f"{TOLERANCE[dtype]:.0e}", f"{ms:.1f}", "ok" if ok else "FAIL"))
    if verbose:
        header = ("op", "dtype", "shape (N x T x D x H)", "fwd rel err", "grad rel err", "tolerance", "ms (op + reference)", "status")
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        print(f"a3ext selftest: torch {torch.__version__}, CPU kernels {ops.cpu_isa()}, "
              f"reference a3ext.reference (numpy float64)")
        for j, r in enumerate([header] + rows):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
            if j == 0:
                print("  ".join("-" * w for w in widths))
        print("all ops agree with the reference" if ok_all else "SOME OPS DISAGREE WITH THE REFERENCE")
    return ok_all
