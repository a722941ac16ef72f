"""Running the demo's stages: progress, logging, resume, failures, atomic files.

Layout of the output directory ``DIR``::

    DIR/index.html              the report (rewritten after every stage)
    DIR/metrics.json            every number of every stage (rewritten after every stage)
    DIR/<stage>_*.png           the pictures the page shows
    DIR/stages/<stage>.json     one record per finished stage: status, times, metrics,
                                the page blocks, or the error and its traceback
    DIR/work/<stage>/           intermediate state (dataset, checkpoints, finished sub-steps)

Resume: a stage whose record says ``ok`` for the same mode and settings, and whose
pictures all exist, is not run again (``force=True`` reruns it). Inside a stage, sub-steps
(:meth:`StageContext.substep`) and the parts' own checkpoints in ``work/<stage>`` let
an interrupted stage continue where it stopped. Every file is written atomically
(temporary file in the same folder, then ``os.replace``).

May import: the standard library, torch and tqdm (lazily), :mod:`a3ext._util`, and the
demo's :mod:`.stage_list`, :mod:`.stages` (the stage functions) and :mod:`.report` (the
page); not :mod:`.cli`, which builds on this one.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

from .._util import atomic_write, set_new_file_mode
from .stage_list import METRIC_KEYS, MODES, STAGES

__all__ = ["STAGES", "MODES", "METRIC_KEYS", "StageContext", "JobPool", "run_demo", "atomic_write_bytes",
           "atomic_write_text", "atomic_write_json"]

RECORD_VERSION = 1


# --------------------------------------------------------------------------- atomic files

def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace``: readers see the old or the new file, never a partial one."""
    return atomic_write(path, lambda f: f.write(data))

def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj):
    """Plain JSON values from numpy / torch scalars, tuples and paths."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if type(obj).__module__ in ("numpy", "torch") and hasattr(obj, "item"):
        try:
            return _jsonable(obj.item())  # numpy scalar, 0-d array or one-element tensor
        except (TypeError, ValueError, RuntimeError):
            return _jsonable(obj.tolist())
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None  # NaN and infinities are not JSON
    return obj


def atomic_write_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- stage context

class StageContext:
    """What a stage function gets: where to write, its settings, and the page it builds.

    A stage adds page *blocks* (:meth:`heading`, :meth:`text`, :meth:`figure`,
    :meth:`table`, :meth:`gallery`) and numbers (``ctx.metrics``, a dict), writes PNGs
    with :meth:`png`, advances its progress bar with :meth:`advance`, and groups
    expensive work into :meth:`substep` s that an interrupted run does not redo.
    """

    def __init__(self, name: str, out_dir: Path, mode: str, settings: dict, bar=None):
        self.name = name
        self.out_dir = Path(out_dir)
        self.mode = mode
        self.settings = settings
        self.work = self.out_dir / "work" / name
        self.blocks: list[dict] = []
        self.metrics: dict = {}
        self.summary = ""
        #: wall and CPU seconds of each sub-step (``reused``: taken from an interrupted run)
        self.timings: dict[str, dict] = {}
        self._bar = bar
        #: whether the parts' own progress bars should be shown (the stage bar is on)
        self.progress = bar is not None

    # -- progress --------------------------------------------------------------------
    def advance(self, what: str = "") -> None:
        """One unit of the stage's progress bar done (``what``: shown beside the bar)."""
        if self._bar is not None:
            if what:
                self._bar.set_postfix_str(what, refresh=False)
            self._bar.update(1)

    # -- files -----------------------------------------------------------------------
    def png_name(self, name: str) -> str:
        return f"{self.name}_{name}.png"

    def png(self, name: str, write: Callable[[str], object]) -> str:
        """Write ``DIR/<stage>_<name>.png`` atomically: ``write(tmp_path)`` saves a PNG to
        a temporary path (ending in ``.png``) that is then renamed. Returns the file name
        (relative to DIR, as the page references it)."""
        fname = self.png_name(name)
        final = self.out_dir / fname
        fd, tmp = tempfile.mkstemp(prefix="." + fname + ".", suffix=".png", dir=self.out_dir)
        os.close(fd)
        try:
            write(tmp)
            set_new_file_mode(tmp, final)  # mkstemp's 0600 would keep the page's pictures private
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return fname

    def save_pil(self, name: str, image, max_side: int | None = None) -> str:
        """A PIL image as ``DIR/<stage>_<name>.png`` (downscaled to ``max_side``)."""
        def write(path):
            im = image.convert("RGB")
            if max_side and max(im.size) > max_side:
                im.thumbnail((max_side, max_side))
            im.save(path, format="PNG")
        return self.png(name, write)

    def save_figure(self, name: str, fig) -> str:
        """A matplotlib ``Figure`` (object API, Agg canvas) as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        return self.png(name, lambda path: fig.savefig(path, format="png"))

    # -- page blocks -------------------------------------------------------------------
    def heading(self, text: str) -> None:
        self.blocks.append({"type": "heading", "text": str(text)})

    def text(self, text: str) -> None:
        self.blocks.append({"type": "text", "text": str(text)})

    def figure(self, src: str, caption: str = "", width: int | None = None) -> None:
        self.blocks.append({"type": "figure", "src": src, "caption": str(caption), "width": width})

    def table(self, columns: Iterable[str], rows: Iterable[Iterable], caption: str = "") -> None:
        self.blocks.append({"type": "table", "columns": [str(c) for c in columns],
                            "rows": [[_cell(v) for v in r] for r in rows], "caption": str(caption)})

    def gallery(self, items: list[dict], caption: str = "", min_width: int = 250) -> None:
        """A grid of pictures, each ``{"src": png, "title": str, "lines": [[label, text], ...]}``;
        cards are at least ``min_width`` CSS pixels wide."""
        self.blocks.append({"type": "gallery", "items": items, "caption": str(caption), "min_width": int(min_width)})

    # -- resumable sub-steps ---------------------------------------------------------------
    def _finished_substep(self, key: str) -> dict | None:
        path = self.work / f"step_{key}.json"
        rec = _read_json(path) if path.is_file() else None
        if (isinstance(rec, dict) and rec.get("mode") == self.mode and _images_exist(self.out_dir, rec.get("blocks", []))
                and all((self.out_dir / f).is_file() for f in _png_strings(rec.get("value")))):
            return rec
        return None

    def jobs(self, jobs: dict, planned: int | None = None) -> "JobPool":
        """A :class:`JobPool` for independent jobs ``{key: (fn, args)}`` over this process's
        torch threads (the demo's ``threads``); ``planned``: the stage's full number of
        jobs (those already finished in an interrupted run included)."""
        import torch

        return JobPool(jobs, torch.get_num_threads(), planned=planned)

    def substep_done(self, key: str) -> bool:
        """Whether :meth:`substep` ``key`` would reuse an interrupted run's result."""
        return self._finished_substep(key) is not None

    def substep(self, key: str, fn: Callable[[], object]):
        """Run ``fn()`` once: its return value (JSON) and the blocks it added are stored in
        ``work/<stage>/<key>.json``; a rerun of the stage (after an interruption) reuses
        them when every picture they reference still exists."""
        path = self.work / f"step_{key}.json"
        rec = self._finished_substep(key)
        if rec is not None:
            self.blocks.extend(rec["blocks"])
            self.timings[key] = dict(rec.get("timing", {}), reused=True)
            return rec.get("value")
        start = len(self.blocks)
        t0, c0 = time.perf_counter(), time.process_time()
        value = _jsonable(fn())
        timing = {"seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(time.process_time() - c0, 2)}
        self.timings[key] = timing
        atomic_write_json(path, {"mode": self.mode, "value": value, "blocks": self.blocks[start:], "timing": timing})
        return value


# --------------------------------------------------------------------------- parallel jobs

#: set in the environment of JobPool's worker processes (read by stages._in_worker,
#: which may not import this module)
JOB_WORKER_ENV = "A3EXT_JOB_WORKER"


def _job_worker_init(threads: int) -> None:
    import signal

    import torch

    os.environ[JOB_WORKER_ENV] = "1"
    # Ctrl-C reaches the whole process group: the main process stops the workers
    # itself, so they ignore it instead of printing tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


class JobPool:
    """Independent jobs ``{key: (fn, args)}`` run in worker processes, so that a stage
    made of several small trainings uses every core: on 2 cores two single-threaded
    trainings side by side do more work per second than one after the other on two
    threads (small networks spend much of a 2-thread step waiting at OpenMP barriers).

    ``fn`` must be a module-level function and ``args`` and the result picklable.
    ``threads`` cores are shared out over ``planned`` jobs (default: ``len(jobs)``; a
    stage resumed with fewer jobs left passes its full count, so each job keeps the
    thread count it started with): ``threads // min(threads, planned)`` torch threads
    per job, and up to ``min(threads, planned)`` workers (spawned, not forked). Jobs
    start in the order given (put the longest first). When at most one worker is
    needed nothing is spawned: each job runs in this process, with the same thread
    count, when its result is asked for. A job's result depends on its thread count
    only (as any torch computation): the same in a worker with one thread as here with
    one thread. Use as a context manager: leaving it normally cancels the jobs not yet
    started and waits for the running ones; leaving it on an exception (a failed job,
    Ctrl-C) stops the workers at once, and their jobs continue from their own
    checkpoints, if they write any, when the stage is run again.
    """

    def __init__(self, jobs: dict, threads: int, *, planned: int | None = None):
        self._jobs = dict(jobs)
        self._done: dict = {}
        self._futures: dict = {}
        self._executor = None
        threads = max(1, int(threads))
        slots = min(threads, max(1, len(self._jobs) if planned is None else int(planned)))
        self.threads_per_worker = max(1, threads // slots)
        #: processes started (1: the jobs run in this process)
        self.workers = max(1, min(slots, len(self._jobs)))
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_job_worker_init,
                                                 initargs=(self.threads_per_worker,))
            for key, (fn, args) in self._jobs.items():
                self._futures[key] = self._executor.submit(fn, *args)

    def result(self, key):
        """The job's return value (waits for it; re-raises its exception). If the
        worker processes could not start or died (a script that starts the demo at
        import time, without ``if __name__ == "__main__":``, makes every spawned
        worker fail while importing it), the jobs still to finish run here instead,
        after one warning."""
        if key in self._futures:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return self._futures[key].result()
            except BrokenProcessPool as e:
                import warnings

                warnings.warn(f"a3ext demo: the worker processes failed ({e}); running the remaining jobs in "
                              f"this process, one after the other. (A script that calls run_demo must do so "
                              f"under `if __name__ == '__main__':`, or every worker re-runs it.)",
                              RuntimeWarning, stacklevel=2)
                self.close(abort=True)
                # keep what finished before the pool broke; the rest runs here
                self._futures = {k: f for k, f in self._futures.items()
                                 if f.done() and not f.cancelled() and f.exception() is None}
                if key in self._futures:
                    return self._futures[key].result()
        if key not in self._done:
            import torch

            fn, args = self._jobs[key]
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads_per_worker)
            try:
                self._done[key] = fn(*args)
            finally:
                torch.set_num_threads(previous)
        return self._done[key]

    def close(self, abort: bool = False) -> None:
        """Cancel the jobs not started; wait for the running ones (``abort``: stop them)."""
        ex, self._executor = self._executor, None
        if ex is None:
            return
        processes = list((getattr(ex, "_processes", None) or {}).values())  # to stop them on abort
        ex.shutdown(wait=not abort, cancel_futures=True)
        if abort:
            for p in processes:
                if p.is_alive():
                    p.terminate()
            for p in processes:
                p.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)


def _cell(v):
    if isinstance(v, float):
        if v != v:
            return "nan"
        return float(f"{v:.4g}")
    return _jsonable(v)


def block_images(blocks: list[dict]) -> list[str]:
    """Every PNG the blocks reference."""
    out = []
    for b in blocks:
        if b.get("type") in ("figure", "gallery_item"):
            out.append(b["src"])
        elif b.get("type") == "gallery":
            out.extend(item["src"] for item in b.get("items", []))
    return out


def _png_strings(value) -> list[str]:
    """Every string ending in ``.png`` inside a JSON value (files a sub-step made)."""
    if isinstance(value, str):
        return [value] if value.endswith(".png") else []
    if isinstance(value, dict):
        return [f for v in value.values() for f in _png_strings(v)]
    if isinstance(value, list):
        return [f for v in value for f in _png_strings(v)]
    return []


def _images_exist(out_dir: Path, blocks: list[dict]) -> bool:
    return all((out_dir / src).is_file() for src in block_images(blocks))


# --------------------------------------------------------------------------- running

def _stage_record_path(out_dir: Path, name: str) -> Path:
    return out_dir / "stages" / f"{name}.json"


def load_records(out_dir: Path) -> dict[str, dict]:
    """The stored stage records of ``out_dir`` (name -> record)."""
    recs = {}
    for name in STAGES:
        rec = _read_json(_stage_record_path(out_dir, name))
        if isinstance(rec, dict) and rec.get("version") == RECORD_VERSION:
            recs[name] = rec
    return recs


def _settings_key(mode: str, settings: dict) -> str:
    return mode + " " + json.dumps(_jsonable(settings), sort_keys=True)


def _is_complete(out_dir: Path, rec: dict | None, mode: str, settings: dict) -> bool:
    """A stored stage is complete when it succeeded with the same mode and settings and
    every picture it shows is still there."""
    return (isinstance(rec, dict) and rec.get("status") == "ok" and rec.get("mode") == mode
            and rec.get("settings") == _jsonable(settings) and _images_exist(out_dir, rec.get("blocks", [])))


def _prepare_work(work: Path, key: str, force: bool) -> None:
    """Keep ``work`` for an interrupted stage with the same mode and settings (``key``);
    start it afresh otherwise."""
    marker = work / "settings.txt"
    if work.exists() and (force or not marker.is_file() or marker.read_text().strip() != key):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_text(marker, key + "\n")


def _normalise_parts(parts) -> tuple[str, ...]:
    if isinstance(parts, str):
        parts = [p for p in parts.replace(",", " ").split() if p]
    parts = tuple(parts)
    unknown = [p for p in parts if p not in STAGES]
    if unknown:
        raise ValueError(f"run_demo: parts must be among {', '.join(STAGES)}, but got {', '.join(map(repr, unknown))}")
    if not parts:
        raise ValueError(f"run_demo: parts is empty; expected one or more of {', '.join(STAGES)}")
    return tuple(p for p in STAGES if p in parts)  # run in the canonical order


def _environment() -> dict:
    import platform

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def collect_metrics(out_dir: Path, mode: str, parts: tuple[str, ...], records: dict[str, dict]) -> dict:
    """``metrics.json``: run info plus, per stage, its status, times and numbers."""
    metrics = {"mode": mode, "quick": mode == "quick", "parts": list(parts),
               "written": _dt.datetime.now().isoformat(timespec="seconds"),
               "environment": _environment(), "stages": {}}
    for name in STAGES:
        rec = records.get(name)
        if rec is None or (name not in parts and rec.get("mode") != mode):
            continue
        metrics["stages"][name] = {k: rec.get(k) for k in ("status", "mode", "seconds", "cpu_seconds", "finished",
                                                           "summary", "error")}
        if rec.get("status") == "ok":
            metrics[name] = rec.get("metrics", {})
    return metrics


def run_demo(out_dir, quick: bool = False, parts=STAGES, tiny: bool = False, *, force: bool = False,
             progress: bool = True, log: Callable[[str], None] | None = None, threads: int | None = None,
             stage_functions: dict | None = None) -> dict:
    """Run the demo's stages into ``out_dir`` and write ``index.html``, ``metrics.json``
    and the PNGs there.

    ``quick``: smaller settings (under 10 minutes on 2 cores; the page says so);
    ``tiny``: seconds per stage (for tests; one thread); otherwise the full settings (under an hour).
    ``parts``: the stages to run (names of :data:`STAGES`, or a comma-separated string).
    A stage already completed in ``out_dir`` in the same mode is skipped unless
    ``force``. A stage that raises is recorded with its error and traceback and the
    others still run. ``log``: called with one line per stage (default: print to
    stderr). ``threads``: torch intra-op threads while the demo runs (default: torch's
    setting; 1 in tiny mode), restored afterwards. ``stage_functions``: replaces stage functions by name (tests).
    The GAN stage trains in spawned worker processes (:class:`JobPool`), which re-import
    the calling script: call ``run_demo`` from a script under
    ``if __name__ == "__main__":`` (inside a starting worker it raises at once).

    Returns ``{"ok": bool, "mode", "out_dir", "index", "metrics", "stages": {name:
    {"status": "ok"|"failed", "ran": bool, "seconds", "error"}}}``.
    """
    import multiprocessing

    from . import stages as stage_mod

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError("run_demo was called while a worker process of the demo was starting: the script "
                           "that calls it runs again in every spawned worker. Put the call under "
                           "`if __name__ == '__main__':`.")
    if tiny and quick:
        raise ValueError("run_demo: choose at most one of quick=True and tiny=True")
    mode = "tiny" if tiny else "quick" if quick else "full"
    parts = _normalise_parts(parts)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stages").mkdir(exist_ok=True)
    if log is None:
        def log(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    functions = dict(stage_mod.STAGE_FUNCTIONS)
    functions.update(stage_functions or {})
    settings = stage_mod.SETTINGS[mode]

    import torch

    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"run_demo: threads must be a positive int or None, but got {threads!r}")
    previous = torch.get_num_threads()
    if threads is None and mode == "tiny":
        # tiny runs beside other work (tests): one thread avoids OpenMP spin-wait stalls
        # when the machine is oversubscribed
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_stages(out, mode, parts, functions, settings, force, progress, log)
    finally:
        torch.set_num_threads(previous)


def _run_stages(out: Path, mode: str, parts: tuple[str, ...], functions: dict, settings: dict, force: bool,
                progress: bool, log: Callable[[str], None]) -> dict:
    status: dict[str, dict] = {}
    records = load_records(out)
    t_all = time.perf_counter()
    log(f"[demo] {mode} mode: {', '.join(parts)} -> {out}")
    for i, name in enumerate(parts, 1):
        tag = f"[demo] {i}/{len(parts)} {name}"
        rec = records.get(name)
        if not force and _is_complete(out, rec, mode, settings[name]):
            status[name] = {"status": "ok", "ran": False, "seconds": rec.get("seconds"), "error": None}
            log(f"{tag}: already done ({rec.get('seconds', 0):.1f} s in an earlier run), skipped: {rec.get('summary', '')}")
            continue
        ctx_settings = settings[name]
        _prepare_work(out / "work" / name, _settings_key(mode, ctx_settings), force)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=ctx_settings.get("steps"), desc=f"demo {i}/{len(parts)} {name}", unit="step",
                       file=sys.stderr, leave=True, dynamic_ncols=True)
        ctx = StageContext(name, out, mode, ctx_settings, bar)
        started = _dt.datetime.now().isoformat(timespec="seconds")
        t0, c0 = time.perf_counter(), time.process_time()
        error = tb = None
        try:
            functions[name](ctx)
            state = "ok"
        except Exception as exc:  # a failed stage is reported; the others still run
            state = "failed"
            error = f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc()
        finally:
            if bar is not None:
                bar.close()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        rec = {"version": RECORD_VERSION, "name": name, "mode": mode, "status": state, "started": started,
               "finished": _dt.datetime.now().isoformat(timespec="seconds"), "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2), "summary": ctx.summary if state == "ok" else "",
               "metrics": dict(ctx.metrics, substep_seconds=ctx.timings) if state == "ok" else {}, "blocks": ctx.blocks if state == "ok" else [],
               "settings": ctx_settings, "error": error, "traceback": tb}
        atomic_write_json(_stage_record_path(out, name), rec)
        records[name] = load_records(out).get(name, rec)
        status[name] = {"status": state, "ran": True, "seconds": round(seconds, 2), "error": error}
        if state == "ok":
            log(f"{tag}: done in {seconds:.1f} s ({cpu:.0f} CPU s): {ctx.summary}")
        else:
            log(f"{tag}: FAILED after {seconds:.1f} s: {error}")
        _write_outputs(out, mode, parts, records)
    if not parts or all(not s["ran"] for s in status.values()):
        _write_outputs(out, mode, parts, records)
    metrics = _read_json(out / "metrics.json") or {}
    ok = all(s["status"] == "ok" for s in status.values())
    failed = [n for n, s in status.items() if s["status"] != "ok"]
    log(f"[demo] {'finished' if ok else 'finished with failures (' + ', '.join(failed) + ')'} in "
        f"{time.perf_counter() - t_all:.1f} s: {out / 'index.html'}")
    return {"ok": ok, "mode": mode, "out_dir": str(out), "index": str(out / "index.html"), "metrics": metrics,
            "stages": status}


def _write_outputs(out: Path, mode: str, parts: tuple[str, ...], records: dict[str, dict]) -> None:
    from . import report

    metrics = collect_metrics(out, mode, parts, records)
    atomic_write_json(out / "metrics.json", metrics)
    shown = {n: r for n, r in records.items() if n in parts or r.get("mode") == mode}
    atomic_write_text(out / "index.html", report.render_page(mode, parts, shown, metrics))
