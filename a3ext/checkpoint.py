"""Checkpoint files for every a3ext trainer: atomic, digest-verified, ``weights_only``.

A checkpoint is a dict of tensors and plain Python values written with ``torch.save``.
:func:`save` adds one entry, ``"a3ext_integrity"``, holding the checkpoint's kind
(``"captioning"``, ``"gan"``, ...) and the sha256 of a canonical serialisation of
everything else: every key, number and string, every tensor's dtype, shape, stride,
storage offset and the bytes of its whole storage (so a flipped bit anywhere in the
tensor data changes the digest; ``torch.load`` itself never checks them). The entry is
an ordinary dict in the same file, so an older a3ext, or ``torch.load`` alone, still
reads new checkpoints.

:func:`load` reads with ``torch.load(map_location="cpu", weights_only=True)`` (no
pickled code runs), recomputes the digest and refuses a mismatch. Every failure is a
:class:`CheckpointError` (a ``ValueError``) or :class:`CheckpointNotFoundError` (also a
``FileNotFoundError``) with a one-line message that names the file and says what is
wrong: missing, empty, not a ``torch.save`` archive, truncated or damaged archive,
Python objects other than tensors and containers, corrupt (digest mismatch), or a
checkpoint of another kind. Files written before digests existed (no integrity entry)
load with an :class:`UnverifiedCheckpointWarning`, provided they look exactly like the
old format of that kind.

Writes go through :func:`a3ext._util.atomic_write` (temporary file beside the target,
fsync, ``os.replace``): the target is always the old or the new complete file. A
failed write (a full disk, say) raises :class:`CheckpointWriteError` (an ``OSError``)
saying what happened and that the previous checkpoint is intact; temporaries left by a
process killed mid-save are removed by the next save or load of that checkpoint.

May import: ``a3ext._util``; outside a3ext: torch.
"""
from __future__ import annotations

import collections
import errno as _errno
import hashlib
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ._util import atomic_write, refused_global, remove_stale_temporaries

__all__ = ["CheckpointError", "CheckpointNotFoundError", "CorruptCheckpointError", "CheckpointWriteError",
           "UnverifiedCheckpointWarning", "Kind", "save", "load", "digest", "INTEGRITY_KEY", "FORMAT"]

#: The dict entry that carries the kind and the digest.
INTEGRITY_KEY = "a3ext_integrity"
#: Version of the integrity entry (and of the canonical serialisation behind its digest).
FORMAT = "a3ext.checkpoint/1"
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the checkpoint path."""


class CorruptCheckpointError(CheckpointError):
    """The file's contents do not match the digest stored in it, or its archive is damaged."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (``errno`` as the underlying error); the previous
    file at that path, if any, is unchanged."""

    def __str__(self) -> str:  # the one-line message, not OSError's "[Errno n] ..." form
        return str(self.args[0]) if self.args else super().__str__()


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint written before a3ext stored digests: it loads, but cannot be verified."""


@dataclass(frozen=True)
class Kind:
    """One kind of checkpoint.

    ``name`` is stored in the file; ``label`` is what messages call it ("a3ext GAN
    checkpoint"). ``legacy_keys`` and ``is_legacy`` recognise files of this kind written
    before digests: such a file must have only keys from ``legacy_keys`` and satisfy
    ``is_legacy(state)``; anything else without an integrity entry is refused (a bit
    flip in the entry's own name must not turn a new file into an "unverified" old one).
    """

    name: str
    label: str
    legacy_keys: frozenset = field(default_factory=frozenset)
    is_legacy: Callable[[dict], bool] | None = None

    def __post_init__(self):
        _KINDS[self.name] = self


_KINDS: dict[str, Kind] = {}


def _as_kind(kind, where: str) -> Kind:
    """``kind`` as a :class:`Kind`: one, or the name of one ("captioning", "gan", ...)."""
    if isinstance(kind, Kind):
        return kind
    if isinstance(kind, str):
        if kind not in _KINDS:  # the built-in kinds register when their trainers are imported
            import a3ext.captioning.solver  # noqa: F401
            import a3ext.gan.metrics  # noqa: F401  ("gan-quality")
            import a3ext.gan.train  # noqa: F401
        if kind in _KINDS:
            return _KINDS[kind]
        raise ValueError(f"checkpoint.{where}: unknown kind {kind!r}; expected a checkpoint.Kind or one of "
                         f"{', '.join(repr(k) for k in sorted(_KINDS))}")
    raise TypeError(f"checkpoint.{where}: kind must be a checkpoint.Kind or the name of one (str), "
                    f"got {type(kind).__name__}")


# ----------------------------------------------------------------------------- digest

def _first_line(exc: BaseException, limit: int = 160) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _storage_bytes(storage: torch.UntypedStorage):
    """The bytes of a storage as a buffer hashlib accepts (copied to the CPU if needed)."""
    flat = torch.empty(0, dtype=torch.uint8, device=storage.device)
    flat.set_(storage, 0, (storage.nbytes(),), (1,))
    return flat.cpu().numpy()


def digest(state, header: dict | None = None) -> str:
    """Hex sha256 of a canonical serialisation of ``header`` and ``state``.

    Covers container structure and order, keys, ``None``/bools/ints/floats/complex/
    str/bytes, dtypes, devices, and for each tensor its class, dtype, shape, stride,
    storage offset, ``requires_grad``, conj/neg bits and the bytes of its whole storage
    (a storage shared by several tensors is hashed once and referenced after, exactly
    as ``torch.save`` writes it once). The tensor's device is not covered, so a
    checkpoint saved from CUDA verifies when loaded onto the CPU. Raises ``TypeError``
    naming the entry for anything ``torch.load(weights_only=True)`` could not read back.
    """
    h = hashlib.sha256()
    seen: dict[tuple, int] = {}

    def put(tag: bytes, payload: bytes = b"") -> None:
        h.update(tag)
        h.update(len(payload).to_bytes(8, "little"))
        h.update(payload)

    def walk(x, where: str) -> None:
        t = type(x)
        if x is None:
            put(b"N")
        elif t is bool:
            put(b"B", b"1" if x else b"0")
        elif t is int:
            put(b"I", str(x).encode())
        elif t is float:
            put(b"F", x.hex().encode())
        elif t is complex:
            put(b"C", f"{x.real.hex()},{x.imag.hex()}".encode())
        elif t is str:
            put(b"S", x.encode("utf-8", "surrogatepass"))
        elif t is bytes:
            put(b"Y", x)
        elif isinstance(x, torch.Tensor) and t in (torch.Tensor, torch.nn.Parameter):
            if x.layout != torch.strided or x.is_quantized or x.device.type == "meta":
                raise TypeError(f"checkpoint entry {where}: a {x.layout} / quantized / meta tensor cannot be "
                                f"checkpointed; a dense tensor is needed")
            meta = (f"{t.__name__}|{x.dtype}|{tuple(x.shape)}|{x.stride()}|{x.storage_offset()}|"
                    f"{x.requires_grad}|{x.is_conj()}|{x.is_neg()}")
            put(b"T", meta.encode())
            storage = x.untyped_storage()
            key = (str(storage.device), storage.data_ptr(), storage.nbytes())
            if storage.nbytes() and key in seen:
                put(b"R", str(seen[key]).encode())
            else:
                seen[key] = len(seen)
                data = _storage_bytes(storage)
                put(b"D", str(data.nbytes).encode())
                h.update(data)
        elif t is torch.dtype or t is torch.device:
            put(b"d" if t is torch.dtype else b"v", str(x).encode())
        elif t is dict or t is collections.OrderedDict:
            put(b"M", str(len(x)).encode())
            for k, v in x.items():
                walk(k, f"{where}[{k!r}]")
                walk(v, f"{where}[{k!r}]")
            if t is collections.OrderedDict:  # a module's state_dict carries its versions here
                walk(getattr(x, "_metadata", None), f"{where}._metadata")
        elif t is list or t is tuple or t is torch.Size:
            put({list: b"L", tuple: b"U", torch.Size: b"Z"}[t], str(len(x)).encode())
            for i, v in enumerate(x):
                walk(v, f"{where}[{i}]")
        else:
            raise TypeError(f"checkpoint entry {where} is a {t.__module__}.{t.__qualname__}: only tensors, "
                            f"None, bools, numbers, strings, bytes, dtypes, devices, lists, tuples and dicts "
                            f"load with torch.load(weights_only=True)")

    walk(header if header is not None else {}, "header")
    walk(state, "state")
    return h.hexdigest()


# ----------------------------------------------------------------------------- save

def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: itself, or one in its cause/context chain (torch's zip
    writer turns a failed ``write`` into a RuntimeError whose context is the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def save(state: dict, path, kind: Kind | str) -> Path:
    """Write ``state`` (a dict of tensors and plain values) to ``path`` atomically, with
    ``kind`` (a :class:`Kind` or its name) and the digest of its contents in the ``"a3ext_integrity"`` entry.

    Raises ``TypeError`` (before touching the file) for values ``weights_only`` loading
    could not read back, and :class:`CheckpointWriteError` when the write fails; in both
    cases the previous file at ``path`` is unchanged. Stale temporaries of ``path`` left
    by a killed save are removed first.
    """
    kind = _as_kind(kind, "save")
    if type(state) not in (dict, collections.OrderedDict):
        raise TypeError(f"checkpoint.save: state must be a dict, got {type(state).__name__}")
    if INTEGRITY_KEY in state:
        raise ValueError(f"checkpoint.save: {INTEGRITY_KEY!r} is reserved for the digest")
    path = Path(path)
    header = {"format": FORMAT, "kind": kind.name}
    block = {**header, "sha256": digest(state, header)}
    existed = path.is_file()
    remove_stale_temporaries(path)
    try:
        return atomic_write(path, lambda f: torch.save({**state, INTEGRITY_KEY: block}, f))
    except Exception as exc:
        oserr = _os_error(exc)
        if oserr is not None and oserr.errno in (_errno.ENOSPC, _errno.EDQUOT):
            what = "the disk is full (no space left on device)"
        elif oserr is not None:
            what = oserr.strerror or _first_line(oserr)
        else:
            what = _first_line(exc)
        after = (f"the previous checkpoint at {path} is intact" if existed
                 else "no checkpoint was written")
        err = CheckpointWriteError(f"could not write checkpoint {path}: {what}; {after} "
                                   f"(the partial temporary file was removed)")
        err.errno = oserr.errno if oserr is not None else None
        err.filename = str(path)
        raise err from exc


# ----------------------------------------------------------------------------- load

def _read_error(path: Path, kind: Kind, exc: BaseException) -> CheckpointError:
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError):
        name = refused_global(exc)
        if name:  # a foreign pickle (or a flipped bit in a class name)
            return CheckpointError(f"{path} is corrupt or not an {kind.label}: it refers to Python objects other "
                                   f"than tensors and plain containers ({name[:80]}), which "
                                   f"torch.load(weights_only=True) refuses to load")
        m = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        why = m.group(1)[:100] if m else _first_line(exc, 100)
        return CorruptCheckpointError(f"{path} is corrupt or not an {kind.label}: its pickled data cannot be "
                                      f"read with torch.load(weights_only=True) ({why})")
    # the file starts like a zip archive, so anything else is a damaged or cut-off one
    if "PytorchStreamReader" in text:  # "PytorchStreamReader failed ...: <reason>. This is an internal miniz ..."
        why = _first_line(exc, 200).split(". ")[0]
    else:
        why = f"{type(exc).__name__}: {_first_line(exc, 100)}"
    return CorruptCheckpointError(f"{path} is truncated or corrupt: torch.load cannot read its zip archive ({why})")


def _kind_of_legacy(state: dict) -> Kind | None:
    for k in _KINDS.values():
        if k.is_legacy is not None and set(state) <= k.legacy_keys and k.is_legacy(state):
            return k
    return None


def load(path, kind: Kind | str) -> dict:
    """Load a checkpoint of ``kind`` onto the CPU, verified; returns the state dict
    without the integrity entry. See the module docstring for the errors."""
    kind = _as_kind(kind, "load")
    path = Path(path)
    remove_stale_temporaries(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file: expected an {kind.label}")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or _first_line(exc)}") from exc
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): corrupt, truncated or not an {kind.label}")
    if head != _ZIP_MAGIC:
        raise CheckpointError(f"{path} is corrupt, truncated or not an {kind.label}: it is not a zip archive "
                              f"written by torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged archive, refused pickle, ...
        raise _read_error(path, kind, exc) from exc
    if type(state) not in (dict, collections.OrderedDict):
        raise CheckpointError(f"{path} is not an {kind.label}: it holds a {type(state).__name__}, not a dict")

    block = state.pop(INTEGRITY_KEY, None)
    if block is None:
        legacy = _kind_of_legacy(state)
        if legacy is None:
            raise CheckpointError(f"{path} is corrupt or not an {kind.label}: it has no integrity entry and "
                                  f"is not a checkpoint of an earlier a3ext either")
        if legacy is not kind:
            raise CheckpointError(f"{path} is an {legacy.label}, not an {kind.label}")
        warnings.warn(f"{path} was written before a3ext stored checkpoint digests and cannot be verified; "
                      f"save it again to add one", UnverifiedCheckpointWarning, stacklevel=3)
        return state
    if type(block) is not dict or set(block) != {"format", "kind", "sha256"} or block["format"] != FORMAT \
            or type(block["kind"]) is not str or type(block["sha256"]) is not str:
        raise CorruptCheckpointError(f"{path} is corrupt: its integrity entry is damaged or from a newer a3ext "
                                     f"(expected {FORMAT!r})")
    header = {"format": block["format"], "kind": block["kind"]}
    try:
        actual = digest(state, header)
    except TypeError as exc:
        raise CorruptCheckpointError(f"{path} is corrupt: {_first_line(exc)}") from exc
    if actual != block["sha256"]:
        n = 12 if block["sha256"][:12] != actual[:12] else 64
        raise CorruptCheckpointError(f"{path} is corrupt: its contents do not match the sha256 digest stored "
                                     f"with them (stored {block['sha256'][:n]}..., computed {actual[:n]}...)")
    if block["kind"] != kind.name:
        other = _KINDS.get(block["kind"])
        label = other.label if other is not None else f"a3ext {block['kind']} checkpoint"
        raise CheckpointError(f"{path} is an {label}, not an {kind.label}")
    return state
