"""Small helpers shared by the parts: atomic file writes, a resumable verified download and
CLI argument types.

May import: no other a3ext module; outside a3ext: torch.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest, sha256: str | None = None, chunk_size: int = 1 << 16, timeout: float = 30.0,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest``, resumably and verified.

    Bytes go to ``dest + '.part'``; if that file exists (an interrupted download) the
    request asks for the rest with an HTTP ``Range`` header and appends when the
    server answers 206 (it restarts on 200). When ``sha256`` is given the finished
    file must match it: on a mismatch the partial file is deleted and ``ValueError``
    names the expected and actual digest. The finished file is moved into place with
    ``os.replace``, so ``dest`` is either absent or complete. An existing ``dest``
    with the right checksum is not downloaded again.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256.lower()):
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    req = urllib.request.Request(url)
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already complete
            resp = None
        else:
            raise
    if resp is not None:
        with resp:
            if have and resp.status != 206:
                have = 0  # server ignored the range: start over
            total = resp.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with open(part, "ab" if have else "wb") as f:
                done = have
                while True:
                    buf = resp.read(chunk_size)
                    if not buf:
                        break
                    f.write(buf)
                    done += len(buf)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done < total:
                raise IOError(f"download: {url} ended after {done} of {total} bytes; run again to resume")
    if sha256 is not None:
        actual = sha256_file(part)
        if actual != sha256.lower():
            part.unlink()
            raise ValueError(f"download: checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}")
    os.replace(part, dest)
    return dest


#: Temporary files of :func:`atomic_write` now being written by this process.
_WRITING: set[str] = set()


def _temporary_pattern(path: Path) -> re.Pattern:
    """Names of :func:`atomic_write`'s temporaries for ``path``: ``.NAME.p<pid>.<8>.tmp``
    (and ``.NAME.<8>.tmp`` from versions before the pid was recorded)."""
    return re.compile(rf"\.{re.escape(path.name)}\.(?:p(\d+)\.)?[a-z0-9_]{{8}}\.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path) -> list[Path]:
    """Delete the temporaries that :func:`atomic_write` left beside ``path`` when its
    process was killed mid-write (a full-size ``.NAME.p<pid>.xxxxxxxx.tmp`` each time).

    A temporary is stale when the process that made it is gone, or is this process and
    not writing it now; temporaries of a live other process are kept (it may still be
    writing). Only temporaries of ``path``'s own name are touched. Returns the removed
    paths; errors (a read-only directory, a race with another cleaner) are ignored."""
    path = Path(path)
    pattern = _temporary_pattern(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or entry.path in _WRITING:
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (elsewhere
    it is set and restored, and another thread creating a file meanwhile gets 022)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_new_file_mode(fd_or_path, replaces) -> None:
    """Give a temporary from mkstemp (mode 0600) the mode the file it replaces has, or
    for a new file the mode open() would give it (0666 & ~umask); silently nothing
    where the filesystem has no modes."""
    try:
        mode = os.stat(replaces).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        if isinstance(fd_or_path, int):
            os.fchmod(fd_or_path, mode)
        else:
            os.chmod(fd_or_path, mode)
    except OSError:
        pass


def atomic_write(path, write: Callable) -> Path:
    """Write through ``write(fileobj)`` into a temporary file beside ``path``, fsync,
    then :func:`os.replace` it into place: readers never see a partial file.

    The temporary is ``.NAME.p<pid>.xxxxxxxx.tmp`` and is deleted when ``write`` fails;
    a process killed mid-write leaves it behind for :func:`remove_stale_temporaries`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent)
    _WRITING.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            set_new_file_mode(f.fileno(), path)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        _WRITING.discard(tmp)
    return path


def refused_global(exc: BaseException) -> str | None:
    """The Python object a ``torch.load(weights_only=True)`` error says the file refers
    to (``posix.system``), or None when the error is about something else."""
    m = re.search(r"GLOBAL (\S+)", str(exc))
    return m.group(1) if m else None


def cli_description(doc: str) -> str:
    """A module docstring's first paragraph as an argparse description (without the
    reStructuredText ``quotes``)."""
    return doc.split("\n\n")[0].replace("``", "")


def _number(convert: Callable, what: str, allow: Callable) -> Callable:
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not allow(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


#: argparse type: an integer >= 1.
positive_int = _number(int, "a positive integer", lambda v: v >= 1)
#: argparse type: an integer >= 0.
nonnegative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
#: argparse type: a finite number > 0.
positive_float = _number(float, "a positive finite number", lambda v: math.isfinite(v) and v > 0)
#: argparse type: a finite number >= 0.
nonnegative_float = _number(float, "a non-negative finite number", lambda v: math.isfinite(v) and v >= 0)


@contextlib.contextmanager
def torchrun_process_group() -> Iterator[int]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) start a gloo process group unless one is
    already running, and destroy the one it started on exit. Yields the world size."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("gloo")
    try:
        yield world
        if started:
            # every rank reaches the teardown together: once in ~50 runs of the DDP
            # test a rank aborted ("terminate called without an active exception")
            # while tearing gloo down as the other still was (not after an error:
            # a failing rank must not wait here for the others)
            dist.barrier()
    finally:
        if started:
            dist.destroy_process_group()


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (where the assignment's functions show
    their images with matplotlib as the notebooks do)."""
    ipy = sys.modules.get("IPython")
    try:
        shell = ipy.get_ipython() if ipy is not None else None
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - any IPython oddity means: not a notebook
        return False
