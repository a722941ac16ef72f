"""A seeded fuzz of bad calls to the public ops (a3ext.ops.*) and the dispatcher
ops (torch.ops.a3ext.*).

Every case starts from a valid call and breaks one argument (None, a list, a
numpy array, a number, a wrong dtype, rank, size or device, a sparse, mkldnn or
quantized tensor, bad batch_sizes values, shape arithmetic that overflows int64,
bad pack_lengths input), plus a few valid edge calls that must succeed (outputs
with zero elements whose other dimensions are huge). Cases run in child
processes, so a crash or abort is a failure of its case, not of the test run.

Asserted for every bad call:
  * no crash and no silent acceptance;
  * a clear error: TypeError / ValueError / RuntimeError / NotImplementedError
    whose first line names the op, the argument, what was expected ("expected",
    "must", "required") and what was given ("got", "but");
  * the same exception type in eager mode and under FakeTensorMode (every tensor
    made fake), except for the checks of tensor values (batch_sizes, and
    pack_lengths, which is a helper on values, not an op), which fake tensors
    cannot make.

Run as a script (``python python_tests/test_fuzz.py``) it prints the summary and
every failing case.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time

SEED = 1414
N_SAMPLED = 330  # sampled from the generic mutations; the special cases always run
N_CHILDREN = 4

# ---------------------------------------------------------------------------
# The ops and the symbolic shapes of their arguments. Sizes are distinct so that
# every dimension mismatch is visible: N 2, T 3, D 4, H 5; packed: B 3, P 6
# (batch_sizes [3, 2, 1]); gram: N 2, C 3, H 4, W 5.
SIZES = {"N": 2, "T": 3, "D": 4, "H": 5, "4H": 20, "B": 3, "P": 6, "C": 3, "h": 4, "w": 5}
BS = [3, 2, 1]

_PAD = dict(x="N T D", h0="N H", c0="N H")
_RNN_W = dict(Wx="D H", Wh="H H", b="H")
_LSTM_W = dict(Wx="D 4H", Wh="H 4H", b="4H")
_PK = dict(x="P D", batch_sizes="bs", h0="B H", c0="B H")

# name -> (kind, callable path, [(arg, shape)], optional args)
OPS = {
    "rnn": ("public", [("x", _PAD["x"]), ("h0", "N H"), *_RNN_W.items()], ()),
    "rnn_step": ("public", [("x", "N D"), ("prev_h", "N H"), *_RNN_W.items()], ()),
    "lstm": ("public", [("x", _PAD["x"]), ("h0", "N H"), *_LSTM_W.items(), ("c0", "N H")], ("c0",)),
    "lstm_step": ("public", [("x", "N D"), ("prev_h", "N H"), ("prev_c", "N H"), *_LSTM_W.items()], ()),
    "rnn_packed": ("public", [("x", "P D"), ("batch_sizes", "bs"), ("h0", "B H"), *_RNN_W.items()], ()),
    "lstm_packed": ("public", [("x", "P D"), ("batch_sizes", "bs"), ("h0", "B H"), *_LSTM_W.items(),
                               ("c0", "B H")], ("c0",)),
    "gram": ("public", [("features", "N C h w"), ("normalize", "bool")], ()),
    "rnn_forward": ("dispatcher", [("x", "N T D"), ("h0", "N H"), *_RNN_W.items()], ()),
    "rnn_backward": ("dispatcher", [("dh", "N T H"), ("x", "N T D"), ("h0", "N H"), ("Wx", "D H"),
                                    ("Wh", "H H"), ("h", "N T H")], ()),
    "lstm_forward": ("dispatcher", [("x", "N T D"), ("h0", "N H"), ("c0", "N H"), *_LSTM_W.items()], ()),
    "lstm_backward": ("dispatcher", [("dh", "N T H"), ("dc", "N T H"), ("x", "N T D"), ("h0", "N H"),
                                     ("c0", "N H"), ("Wx", "D 4H"), ("Wh", "H 4H"), ("h", "N T H"),
                                     ("c", "N T H"), ("gates", "N T 4H")], ("dh", "dc")),
    "rnn_packed_forward": ("dispatcher", [("x", "P D"), ("batch_sizes", "bs"), ("h0", "B H"),
                                          *_RNN_W.items()], ()),
    "rnn_packed_backward": ("dispatcher", [("dh", "P H"), ("x", "P D"), ("batch_sizes", "bs"), ("h0", "B H"),
                                           ("Wx", "D H"), ("Wh", "H H"), ("h", "P H")], ()),
    "lstm_packed_forward": ("dispatcher", [("x", "P D"), ("batch_sizes", "bs"), ("h0", "B H"), ("c0", "B H"),
                                           *_LSTM_W.items()], ()),
    "lstm_packed_backward": ("dispatcher", [("dh", "P H"), ("dc", "P H"), ("x", "P D"), ("batch_sizes", "bs"),
                                            ("h0", "B H"), ("c0", "B H"), ("Wx", "D 4H"), ("Wh", "H 4H"),
                                            ("h", "P H"), ("c", "P H"), ("gates", "P 4H")], ("dh", "dc")),
    "gram_forward": ("dispatcher", [("features", "N C h w"), ("normalize", "bool")], ()),
    "gram_backward": ("dispatcher", [("grad", "N C C"), ("features", "N C h w"), ("normalize", "bool")], ()),
}

TENSOR_MUTATIONS = ["none", "list", "numpy", "number", "string", "int64", "int32", "bool", "float16",
                    "bfloat16", "complex64", "other_float", "rank_up", "rank_down", "rank_0", "meta",
                    "sparse", "sparse_csr", "mkldnn", "quantized", "nested"]
BS_MUTATIONS = ["none", "list", "numpy", "float32", "int32", "bool", "rank_up", "rank_0", "meta", "sparse",
                "unsorted", "too_big", "negative", "sum_small", "sum_big"]
BS_VALUES = {"unsorted": [1, 3, 2], "too_big": [4, 1, 1], "negative": [3, 3, 1, -1], "sum_small": [3, 2],
             "sum_big": [3, 2, 2]}
DATA_DEPENDENT = set(BS_VALUES) | {"sum_overflow"}  # only the real kernel sees tensor values


def _constrained_dims(op):
    """Dimensions of each tensor argument whose size is tied to another argument:
    changing one of them alone makes the call bad."""
    args = OPS[op][1]
    count = {}
    for _, shape in args:
        if shape not in ("bs", "bool"):
            for s in shape.split():
                count[s] = count.get(s, 0) + 1
    packed = any(shape == "bs" for _, shape in args)
    out = []
    for name, shape in args:
        if shape in ("bs", "bool"):
            continue
        for i, s in enumerate(shape.split()):
            if count[s] > 1 or s == "4H" or (packed and s == "P"):
                out.append((name, i))
    return out


def generic_cases():
    cases = []
    for op, (_, args, optional) in OPS.items():
        for name, shape in args:
            if shape == "bool":
                muts = ["string", "list"] + (["int", "none", "float"] if OPS[op][0] == "public" else [])
            elif shape == "bs":
                muts = BS_MUTATIONS
            else:
                muts = [m for m in TENSOR_MUTATIONS if not (m == "none" and name in optional)]
                if sum(shape not in ("bs", "bool") for _, shape in args) == 1:
                    muts = [m for m in muts if m not in ("other_float", "meta")]  # valid with one tensor
                if name == "x" and "other_float" in muts:
                    muts.remove("other_float")  # x sets the dtype: covered by the other arguments
            cases += [dict(op=op, arg=name, mut=m) for m in muts]
        for name, i in _constrained_dims(op):
            case = dict(op=op, arg=name, mut="size", dim=i)
            if dict(args)[name].split()[i] == "P":
                case["values"] = True  # P = sum(batch_sizes): only the real kernel knows
            cases.append(case)
    return cases


# Special cases, all always run. valid=True: a valid call that must succeed.
H62 = 2 ** 62
BIG = 2 ** 40
SPECIAL = [
    # 4H overflows int64 (H = 2**62): weights of width 0 must not pass.
    dict(op="lstm", arg="h0", mut="h_overflow"),
    dict(op="lstm_forward", arg="h0", mut="h_overflow"),
    dict(op="lstm_backward", arg="h0", mut="h_overflow"),
    dict(op="lstm_packed_forward", arg="h0", mut="h_overflow"),
    dict(op="lstm_packed_backward", arg="h0", mut="h_overflow"),
    # outputs whose element count overflows int64 (zero-stride inputs)
    dict(op="rnn_forward", arg="h0", mut="out_overflow"),
    dict(op="lstm_forward", arg="h0", mut="out_overflow"),
    dict(op="gram_forward", arg="features", mut="out_overflow"),
    # batch_sizes whose sum overflows int64 and wraps to P
    dict(op="rnn_packed_forward", arg="batch_sizes", mut="sum_overflow"),
    dict(op="lstm_packed_forward", arg="batch_sizes", mut="sum_overflow"),
    # all tensor arguments None (no dispatch key at all)
    dict(op="gram_forward", arg="features", mut="all_none"),
    dict(op="rnn_forward", arg="x", mut="all_none"),
    # valid: zero-element outputs with a huge other dimension (no allocation by it)
    *[dict(op=op, arg="-", mut=m, valid=True) for op in ("rnn", "lstm", "rnn_forward", "lstm_forward",
                                                          "rnn_backward", "lstm_backward")
      for m in ("N_big_H0", "T_big_H0")],
    *[dict(op=op, arg="-", mut="B_big_H0", valid=True) for op in ("rnn_packed", "lstm_packed",
                                                                   "rnn_packed_backward", "lstm_packed_backward")],
    dict(op="rnn", arg="-", mut="H_huge_N0", valid=True),
    dict(op="gram", arg="-", mut="N_big_C0", valid=True),
]
PACK_BAD = [  # (lengths spec, T) for a3ext.ops.pack_lengths; arg = the bad one
    ("lengths", "none", None), ("lengths", "string", None), ("lengths", "float_list", None),
    ("lengths", "float_tensor", None), ("lengths", "integral_float_tensor", None), ("lengths", "bool_list", None),
    ("lengths", "bool_tensor", None), ("lengths", "complex_tensor", None), ("lengths", "float_numpy", None),
    ("lengths", "rank2", None), ("lengths", "negative", None), ("lengths", "meta", None),
    ("lengths", "overflow_list", None), ("lengths", "nested", None),
    ("T", "ok", 1), ("T", "ok", 2.5), ("T", "ok", 3.0), ("T", "ok", True), ("T", "ok", "3"), ("T", "ok", -1),
    ("T", "ok", H62), ("T", "ok", [3]),
]
PACK_VALID = [("ok", None), ("ok", 7), ("empty", None), ("zeros", 0), ("numpy", None), ("int32", 4),
              ("np_T", None)]
for arg, spec, T in PACK_BAD:
    SPECIAL.append(dict(op="pack_lengths", arg=arg, mut=spec, T=T))
for spec, T in PACK_VALID:
    SPECIAL.append(dict(op="pack_lengths", arg="-", mut=spec, T=T, valid=True))


def all_cases(seed=SEED, n_sampled=N_SAMPLED):
    """The sampled generic cases, a third of them with the valid float tensors
    requiring grad (the autograd.Function path), then the special cases."""
    rng = random.Random(seed)
    cases = generic_cases()
    rng.shuffle(cases)
    cases = cases[:n_sampled]
    for c in cases:
        if rng.random() < 1 / 3:
            c["grad"] = True
    return cases + SPECIAL


# ---------------------------------------------------------------------------
# Building and running one case (in the child process).
def _valid_args(op):
    import torch

    g = torch.Generator().manual_seed(0)
    out = {}
    for name, shape in OPS[op][1]:
        if shape == "bool":
            out[name] = True
        elif shape == "bs":
            out[name] = torch.tensor(BS)
        else:
            out[name] = torch.randn(*(SIZES[s] for s in shape.split()), generator=g)
    return out


def _mutate_tensor(t, mut, dim=None):
    import torch

    if mut == "none":
        return None
    if mut == "list":
        return t.tolist()
    if mut == "numpy":
        return t.numpy()
    if mut == "number":
        return 1.0
    if mut == "string":
        return "x"
    dtypes = dict(int64=torch.int64, int32=torch.int32, bool=torch.bool, float16=torch.float16,
                  bfloat16=torch.bfloat16, complex64=torch.complex64, float32=torch.float32)
    if mut in dtypes:
        return t.to(dtypes[mut])
    if mut == "other_float":
        return t.to(torch.float64)
    if mut == "rank_up":
        return t.unsqueeze(0)
    if mut == "rank_down":
        return t[0] if t.dim() > 0 else t
    if mut == "rank_0":
        return t.flatten()[0].clone()
    if mut == "meta":
        return t.to("meta")
    if mut == "sparse":
        return t.to_sparse()
    if mut == "sparse_csr":
        return t.to_sparse_csr() if t.dim() == 2 else t.to_sparse()
    if mut == "mkldnn":
        return t.float().to_mkldnn()
    if mut == "quantized":
        return torch.quantize_per_tensor(t.float(), 0.1, 0, torch.qint8)
    if mut == "nested":
        return torch.nested.nested_tensor([t, t])
    if mut == "size":
        shape = list(t.shape)
        shape[dim] += 1
        return torch.zeros(shape, dtype=t.dtype)
    raise ValueError(mut)


def _special_args(case):
    """Arguments of the special cases (in op argument order)."""
    import torch

    op, mut = case["op"], case["mut"]
    args = _valid_args(op)
    e = torch.empty

    def z(*shape):  # zero-stride tensor of any size
        return torch.zeros(()).expand(*shape)

    if mut == "h_overflow":  # N = 0, D = 0, H = 2**62: 4H wraps to 0
        shapes = dict(x=(0, 1, 0), h0=(0, H62), c0=(0, H62), Wx=(0, 0), Wh=(H62, 0), b=(0,), dh=(0, 1, H62),
                      dc=(0, 1, H62), h=(0, 1, H62), c=(0, 1, H62), gates=(0, 1, 0))
        if "packed" in op:
            shapes.update(x=(0, 0), h0=(0, H62), c0=(0, H62), dh=(0, H62), dc=(0, H62), h=(0, H62),
                          c=(0, H62), gates=(0, 0))
            args["batch_sizes"] = torch.zeros(0, dtype=torch.int64)
        for k in args:
            if k in shapes:
                args[k] = e(*shapes[k])
    elif mut == "out_overflow":
        if op == "gram_forward":
            args["features"] = e(1, 2 ** 32, 0, 1)
        else:
            G = 4 if op.startswith("lstm") else 1
            n = 2 ** 31
            shapes = dict(x=(n, n, 0), h0=(n, 2 ** 8), c0=(n, 2 ** 8), Wx=(0, G * 2 ** 8), Wh=(2 ** 8, G * 2 ** 8),
                          b=(G * 2 ** 8,))
            args = {k: z(*shapes[k]) if k != "x" else e(*shapes[k]) for k in args}
    elif mut == "sum_overflow":  # B = 2**62, H = 0, P = 0: sum(batch_sizes) = 2**64 wraps to 0
        shapes = dict(x=(0, 4), h0=(H62, 0), c0=(H62, 0), Wx=(4, 0), Wh=(0, 0), b=(0,))
        args = {k: e(*shapes[k]) if k in shapes else v for k, v in args.items()}
        args["batch_sizes"] = torch.tensor([H62] * 4)
    elif mut == "all_none":
        args = {k: (None if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    elif mut in ("N_big_H0", "T_big_H0"):
        N, T = (BIG, 1) if mut == "N_big_H0" else (1, BIG)
        G = 4 if op.startswith("lstm") else 1
        step = op.endswith("step")
        shapes = dict(x=(N, T, 0), h0=(N, 0), c0=(N, 0), Wx=(0, 0), Wh=(0, 0), b=(0,), dh=(N, T, 0), dc=(N, T, 0),
                      h=(N, T, 0), c=(N, T, 0), gates=(N, T, 0 * G))
        assert not step
        args = {k: e(*shapes[k]) for k in args}
    elif mut == "B_big_H0":
        shapes = dict(x=(BIG, 0), h0=(BIG, 0), c0=(BIG, 0), Wx=(0, 0), Wh=(0, 0), b=(0,), dh=(BIG, 0), dc=(BIG, 0),
                      h=(BIG, 0), c=(BIG, 0), gates=(BIG, 0))
        args = {k: e(*shapes[k]) if k in shapes else v for k, v in args.items()}
        args["batch_sizes"] = torch.tensor([BIG])
    elif mut == "H_huge_N0":  # rnn: G = H = 2**31, nothing to compute (N = 0)
        args.update(x=e(0, 3, 0), h0=e(0, 2 ** 31), Wx=e(0, 2 ** 31), Wh=z(2 ** 31, 2 ** 31), b=z(2 ** 31))
    elif mut == "N_big_C0":
        args["features"] = e(BIG, 0, 2, 2)
    else:
        raise ValueError(mut)
    return list(args.values())


def _pack_args(case):
    import numpy as np
    import torch

    mut, T = case["mut"], case["T"]
    lengths = {
        "ok": torch.tensor([3, 1, 2]), "none": None, "string": "abc", "float_list": [1.5, 2],
        "float_tensor": torch.tensor([1.5, 2.0]), "integral_float_tensor": torch.tensor([1.0, 2.0]),
        "bool_list": [True, False], "bool_tensor": torch.tensor([True, False]),
        "complex_tensor": torch.tensor([1 + 0j, 2 + 0j]), "float_numpy": np.array([1.5, 2.0]),
        "rank2": torch.tensor([[1, 2]]), "negative": [2, -1], "meta": torch.tensor([1, 2], device="meta"),
        "overflow_list": [2 ** 64], "nested": [[1], [2, 3]], "empty": [], "zeros": [0, 0],
        "numpy": np.array([3, 1]), "int32": torch.tensor([3, 1], dtype=torch.int32), "np_T": [2, 1],
    }[mut]
    if mut == "np_T":
        T = np.int64(4)
    return [lengths, T]


def _callable(op):
    import torch
    from a3ext import ops

    return getattr(ops, op) if OPS.get(op, ("public",))[0] == "public" else getattr(torch.ops.a3ext, op)


def build(case):
    import torch

    op = case["op"]
    if op == "pack_lengths":
        return _pack_args(case)
    if "dim" in case or case["mut"] in TENSOR_MUTATIONS + BS_MUTATIONS + ["int", "float"]:
        args = _valid_args(op)
        v = args[case["arg"]]
        mut = case["mut"]
        if case["arg"] == "batch_sizes" and mut in BS_VALUES:
            args["batch_sizes"] = torch.tensor(BS_VALUES[mut])
        elif isinstance(v, bool):
            args[case["arg"]] = {"string": "yes", "list": [True], "int": 2, "none": None, "float": 1.0}[mut]
        else:
            args[case["arg"]] = _mutate_tensor(v, mut, case.get("dim"))
        if case.get("grad"):
            for k, v in args.items():
                if k != case["arg"] and isinstance(v, torch.Tensor) and v.is_floating_point():
                    v.requires_grad_(True)
        return list(args.values())
    return _special_args(case)


def _outcome(fn):
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - every exception is an outcome
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return dict(ok=False, type=type(e).__name__, msg=first[:400])
    return dict(ok=True)


def run_case(case):
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    args = build(case)
    f = _callable(case["op"])
    eager = _outcome(lambda: f(*args))
    fake, representable = None, True
    if case["op"] != "pack_lengths":
        mode = FakeTensorMode(allow_non_fake_inputs=True)

        def conv(a):
            """a as a fake tensor; None where fake tensors cannot represent it (torch
            refuses quantized tensors and turns mkldnn ones into strided tensors)."""
            if not isinstance(a, torch.Tensor):
                return a
            if a.is_quantized or a.is_mkldnn:
                return None
            try:
                f = mode.from_tensor(a)
            except Exception:  # noqa: BLE001 - a kind fake tensors do not model (nested)
                return None
            return f if f.layout == a.layout and f.is_nested == a.is_nested else None

        fargs = [conv(a) for a in args]
        representable = all(fa is not None or a is None for a, fa in zip(args, fargs))

        def fake_call():
            with mode:
                f(*fargs)
        if representable:
            fake = _outcome(fake_call)
    return dict(eager=eager, fake=fake, representable=representable)


def _child():
    import resource
    import warnings

    # A call that allocates by a huge dimension fails here with an error instead
    # of taking the machine's memory (or being killed by the OOM killer).
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    warnings.simplefilter("ignore")
    import torch  # noqa: F401
    import a3ext.ops  # noqa: F401

    for line in sys.stdin:
        i, case = json.loads(line)
        print(json.dumps(["start", i]), flush=True)
        print(json.dumps(["done", i, run_case(case)]), flush=True)


# ---------------------------------------------------------------------------
# The parent: run the cases in child processes, classify the outcomes.
def run_all(cases, n_children=N_CHILDREN, parallel=2):
    """{index: result or 'crash: ...'} for every case."""
    pending = list(enumerate(cases))
    chunks = [pending[k::n_children] for k in range(n_children)]
    results = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    while chunks:
        batch, chunks = chunks[:parallel], chunks[parallel:]
        procs = [(chunk, subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child"],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, env=env)) for chunk in batch]
        for chunk, p in procs:
            out, err = p.communicate("".join(json.dumps([i, c]) + "\n" for i, c in chunk), timeout=600)
            started = None
            for line in out.splitlines():
                msg = json.loads(line)
                if msg[0] == "start":
                    started = msg[1]
                else:
                    results[msg[1]] = msg[2]
                    started = None
            if started is not None:  # the child died inside this case: record it, rerun the rest
                results[started] = f"crash: exit {p.returncode}: {err.strip().splitlines()[-1:] }"
                rest = [(i, c) for i, c in chunk if i not in results]
                if rest:
                    chunks.append(rest)
    return results


_EXPECT = re.compile(r"\b(expected|expects|must|required|requires|only)\b", re.I)
_ACTUAL = re.compile(r"\b(got|but|found|instead)\b", re.I)
_CLEAR_TYPES = {"TypeError", "ValueError", "RuntimeError", "NotImplementedError"}


def op_names(op):
    """Names an error message may use for op: the public name, the dispatcher name."""
    if op == "pack_lengths":
        return ["pack_lengths"]
    names = [f"a3ext.{op}", f"a3ext::{op}"]
    if op.endswith("_forward"):
        names.append(f"a3ext.{op[:-len('_forward')]}")
    return names


def is_clear(case, out):
    if out["type"] not in _CLEAR_TYPES:
        return False
    msg = out["msg"]
    if not any(re.search(re.escape(n) + r"(?![\w])", msg) for n in op_names(case["op"])):
        return False
    if case["arg"] != "-" and not re.search(r"(?<![\w])" + re.escape(case["arg"]) + r"(?![\w])", msg):
        return False
    return bool(_EXPECT.search(msg) and _ACTUAL.search(msg))


def classify(cases, results):
    """Counts and the failing cases by kind."""
    fails = {"crash": [], "accepted": [], "unclear": [], "mismatch": [], "rejected_valid": []}
    n_bad = n_errors = n_compared = n_not_compared = 0
    for i, case in enumerate(cases):
        r = results.get(i, "crash: no result")
        if isinstance(r, str):
            fails["crash"].append((case, r))
            continue
        eager, fake = r["eager"], r["fake"]
        if case.get("valid"):
            for mode, o in (("eager", eager), ("fake", fake)):
                if o is not None and not o["ok"]:
                    fails["rejected_valid"].append((case, mode, o))
            continue
        n_bad += 1
        if eager["ok"]:
            fails["accepted"].append((case, "eager"))
        else:
            n_errors += 1
            if not is_clear(case, eager):
                fails["unclear"].append((case, eager))
        if fake is None or case.get("values") or case["mut"] in DATA_DEPENDENT and case["arg"] == "batch_sizes":
            n_not_compared += 1
            continue
        n_compared += 1
        if (eager["ok"], eager.get("type")) != (fake["ok"], fake.get("type")):
            fails["mismatch"].append((case, eager, fake))
    return dict(n_cases=len(cases), n_bad=n_bad, n_errors=n_errors, n_compared=n_compared,
                n_not_compared=n_not_compared), fails


def summary(counts, fails):
    unclear_pct = 100.0 * len(fails["unclear"]) / max(1, counts["n_errors"])
    lines = [f"{counts['n_cases']} cases ({counts['n_bad']} bad calls): {len(fails['crash'])} crashes, "
             f"{len(fails['accepted'])} accepted silently, {len(fails['unclear'])} unclear "
             f"({unclear_pct:.1f}% of {counts['n_errors']} errors), {len(fails['mismatch'])} eager/fake "
             f"type mismatches (of {counts['n_compared']} compared; {counts['n_not_compared']} not comparable: "
             f"tensor values, pack_lengths, quantized / mkldnn inputs), {len(fails['rejected_valid'])} valid calls "
             f"rejected"]
    for kind, items in fails.items():
        for item in items:
            lines.append(f"  {kind}: {item}")
    return "\n".join(lines), unclear_pct


def test_fuzz_bad_calls():
    cases = all_cases()
    results = run_all(cases)
    counts, fails = classify(cases, results)
    text, unclear_pct = summary(counts, fails)
    assert counts["n_bad"] >= 300, text
    assert not fails["crash"], text
    assert not fails["accepted"], text
    assert not fails["rejected_valid"], text
    assert unclear_pct <= 1.0, text
    assert not fails["mismatch"], text


def test_fuzz_is_seeded_and_covers_every_op():
    a, b = all_cases(), all_cases()
    assert a == b
    ops_hit = {c["op"] for c in a}
    assert ops_hit == set(OPS) | {"pack_lengths"}


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        _child()
    else:
        t0 = time.time()
        cs = all_cases()
        counts, fails = classify(cs, run_all(cs))
        print(summary(counts, fails)[0])
        print(f"{time.time() - t0:.1f} s")
