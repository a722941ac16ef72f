"""`a3ext demo`: the report page, metrics, resume, failed stages, and rendering in
headless Chromium. Runs the demo in its ``tiny`` mode (seconds per stage)."""
from __future__ import annotations

import argparse
import html.parser
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from PIL import Image

from a3ext.demo import METRIC_KEYS, SETTINGS, STAGES, register_cli, run_demo
from a3ext.demo import report, stages
from a3ext.gan import RECIPES as gan_recipes

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class _Refs(html.parser.HTMLParser):
    """Every src/href of the page, and the tags used."""

    def __init__(self):
        super().__init__()
        self.srcs, self.hrefs, self.tags = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k == "src":
                self.srcs.append(v)
            elif k == "href":
                self.hrefs.append(v)


def _refs(page: str) -> _Refs:
    p = _Refs()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_tiny")
    logs: list[str] = []
    result = run_demo(out, tiny=True, progress=False, log=logs.append)
    return out, result, logs


def test_tiny_demo_runs_every_stage(tiny_run):
    out, result, logs = tiny_run
    assert result["ok"], result["stages"]
    assert result["mode"] == "tiny"
    assert list(result["stages"]) == list(STAGES)
    for name in STAGES:
        assert result["stages"][name] == {"status": "ok", "ran": True, "seconds": result["stages"][name]["seconds"],
                                          "error": None}
        assert any(line.startswith(f"[demo] {STAGES.index(name) + 1}/4 {name}: done") for line in logs), logs
    for name in STAGES:
        rec = json.loads((out / "stages" / f"{name}.json").read_text())
        assert rec["status"] == "ok" and rec["mode"] == "tiny" and rec["blocks"]
    # atomic writes leave no temporary files behind
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_page_references_only_existing_decodable_pngs(tiny_run):
    out, _, _ = tiny_run
    page = (out / "index.html").read_text(encoding="utf-8")
    refs = _refs(page)
    assert len(refs.srcs) >= 15
    for src in refs.srcs:
        assert not src.startswith(("http:", "https:", "//", "/", "data:")), src
        assert src.endswith(".png") and "/" not in src, src
        path = out / src
        assert path.is_file(), f"{src} is referenced by index.html but missing"
        with Image.open(path) as im:
            im.load()
            assert im.format == "PNG" and im.width > 8 and im.height > 8, (src, im.format, im.size)
    # self-contained: inline CSS only, no scripts, stylesheets, fonts or external URLs
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page
    assert all(h.startswith("#") for h in refs.hrefs), refs.hrefs
    assert "tiny mode" in page and "quick mode: smaller settings" not in page
    for name in STAGES:
        assert f'<section id="{name}">' in page


def test_metrics_json_has_every_expected_key(tiny_run):
    out, result, _ = tiny_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result["metrics"]
    assert metrics["mode"] == "tiny" and metrics["quick"] is False
    for name, keys in METRIC_KEYS.items():
        assert metrics["stages"][name]["status"] == "ok"
        assert metrics["stages"][name]["seconds"] >= 0
        missing = [k for k in keys if k not in metrics[name]]
        assert not missing, f"metrics.json[{name!r}] lacks {missing}"
    cap = metrics["captioning"]
    for cell in ("rnn", "lstm"):
        for tag in ("bleu_greedy", "bleu_beam"):
            assert set(cap[cell][tag]) >= {"bleu1", "bleu2", "bleu3", "bleu4"}
            assert all(0.0 <= cap[cell][tag][f"bleu{n}"] <= 1.0 for n in range(1, 5))
        assert cap[cell]["iterations"] > 0 and np.isfinite(cap[cell]["final_loss"])
    vis = metrics["visualization"]
    assert [p["photo"] for p in vis["predictions"]] == SETTINGS["tiny"]["visualization"]["photos"]
    assert len(vis["fooling"]["results"]) == len(SETTINGS["tiny"]["visualization"]["fool"])
    assert len(vis["class_visualization"]) == len(SETTINGS["tiny"]["visualization"]["classes"])
    for c in vis["class_visualization"]:  # both methods, each scored on random views too
        assert 0.0 <= c["transformed_probability"] <= 1.0 and 0.0 <= c["robust"]["transformed_probability"] <= 1.0
        assert c["robust"]["iterations"] == SETTINGS["tiny"]["visualization"]["robust_steps"]
    assert set(metrics["style"]["presets"]) == set(SETTINGS["tiny"]["style"]["presets"])
    for r in metrics["style"]["presets"].values():
        assert r["iterations"] == SETTINGS["tiny"]["style"]["iterations"] and np.isfinite(r["final"]["total"])
    g = metrics["gan"]
    for kind in ("vanilla", "ls", "dc", "wgangp"):
        assert g[kind]["iterations"] == SETTINGS["tiny"]["gan"]["iterations"][kind]
        assert set(g[kind]["quality"]) >= {"confidence", "class_entropy", "frechet"}
        assert g[kind]["recipe"] == SETTINGS["tiny"]["gan"]["recipe"]
        assert g[kind]["settings"]["ema_decay"] == gan_recipes[g[kind]["recipe"]][kind]["ema_decay"]
    assert 0.0 <= g["semi_supervised"]["gan_accuracy"] <= 1.0
    assert 0.0 <= g["semi_supervised"]["baseline_accuracy"] <= 1.0


def test_rerun_skips_completed_stages(tiny_run):
    out, _, _ = tiny_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".png"}
    before.update({f"stages/{p.name}": p.stat().st_mtime_ns for p in (out / "stages").iterdir()})

    def must_not_run(ctx):
        raise AssertionError(f"stage {ctx.name} ran again although it was complete")

    logs: list[str] = []
    result = run_demo(out, tiny=True, progress=False, log=logs.append,
                      stage_functions={n: must_not_run for n in STAGES})
    assert result["ok"]
    assert all(s["ran"] is False and s["status"] == "ok" for s in result["stages"].values()), result["stages"]
    assert sum("already done" in line for line in logs) == len(STAGES)
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".png"}
    after.update({f"stages/{p.name}": p.stat().st_mtime_ns for p in (out / "stages").iterdir()})
    assert after == before
    assert len(_refs((out / "index.html").read_text()).srcs) >= 15


def test_failed_stage_is_reported_and_the_others_still_run(tmp_path):
    calls = []

    def broken(ctx):
        calls.append(ctx.name)
        raise RuntimeError("captioning exploded: <b>bad & worse</b>")

    result = run_demo(tmp_path, tiny=True, parts=("captioning", "style"), progress=False, log=lambda m: None,
                      stage_functions={"captioning": broken})
    assert calls == ["captioning"]
    assert result["ok"] is False
    assert result["stages"]["captioning"]["status"] == "failed"
    assert "captioning exploded" in result["stages"]["captioning"]["error"]
    assert result["stages"]["style"] == {"status": "ok", "ran": True, "seconds": result["stages"]["style"]["seconds"],
                                         "error": None}
    page = (tmp_path / "index.html").read_text()
    assert "captioning exploded: &lt;b&gt;bad &amp; worse&lt;/b&gt;" in page
    assert "<b>bad" not in page
    assert "<details><summary>traceback</summary>" in page and "RuntimeError" in page
    assert "1 stage(s) failed" in page
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stages"]["captioning"]["status"] == "failed" and "captioning" not in metrics
    assert "presets" in metrics["style"]
    for src in _refs(page).srcs:
        assert (tmp_path / src).is_file()

    # the next run resumes: the failed stage runs again, the completed one is skipped
    logs: list[str] = []
    result = run_demo(tmp_path, tiny=True, parts="captioning,style", progress=False, log=logs.append)
    assert result["ok"], result["stages"]
    assert result["stages"]["captioning"]["ran"] is True and result["stages"]["style"]["ran"] is False
    page = (tmp_path / "index.html").read_text()
    assert "captioning exploded" not in page and "RuntimeError" not in page


def test_interrupted_stage_reuses_its_finished_substeps(tmp_path):
    calls = []

    def stage(ctx, interrupt: bool):
        def first():
            calls.append("first")
            ctx.figure(ctx.save_pil("first", Image.new("RGB", (32, 24), (200, 30, 30))), "made once")
            return {"value": 7}

        assert ctx.substep("first", first) == {"value": 7}
        if interrupt:
            raise KeyboardInterrupt  # like Ctrl-C: not a stage failure, the run stops
        ctx.metrics["presets"] = {}

    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path, tiny=True, parts=["style"], progress=False, log=lambda m: None,
                 stage_functions={"style": lambda ctx: stage(ctx, True)})
    assert not (tmp_path / "stages" / "style.json").exists()
    result = run_demo(tmp_path, tiny=True, parts=["style"], progress=False, log=lambda m: None,
                      stage_functions={"style": lambda ctx: stage(ctx, False)})
    assert result["ok"] and result["stages"]["style"]["ran"] is True
    assert calls == ["first"]  # the finished sub-step was not redone
    rec = json.loads((tmp_path / "stages" / "style.json").read_text())
    assert rec["metrics"]["substep_seconds"]["first"]["reused"] is True
    assert 'src="style_first.png"' in (tmp_path / "index.html").read_text()


def test_cli_exit_code_nonzero_when_a_stage_fails(tmp_path, monkeypatch, capsys):
    def broken(ctx):
        raise ValueError("style stage failed on purpose")

    monkeypatch.setitem(stages.STAGE_FUNCTIONS, "style", broken)
    parser = argparse.ArgumentParser(prog="a3ext")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "--out", str(tmp_path), "--tiny", "--parts", "style", "--no-progress"])
    assert callable(args.func)
    assert args.func(args) == 1
    assert "style stage failed on purpose" in (tmp_path / "index.html").read_text()
    assert str(tmp_path / "index.html") in capsys.readouterr().out

    args = parser.parse_args(["demo", "--quick", "--parts", "captioning,gan", "style"])
    assert args.quick and args.parts == [["captioning", "gan"], ["style"]] and args.out == "a3ext_demo"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--parts", "painting"])


def test_bad_arguments_name_what_was_expected(tmp_path):
    with pytest.raises(ValueError, match="parts must be among captioning, visualization, style, gan.*'painting'"):
        run_demo(tmp_path, parts=["painting"])
    with pytest.raises(ValueError, match="at most one of quick=True and tiny=True"):
        run_demo(tmp_path, quick=True, tiny=True)


def test_quick_banner_and_escaping_in_render_page():
    rec = {"status": "ok", "mode": "quick", "seconds": 1.0, "summary": "a < b",
           "blocks": [{"type": "text", "text": "<script>alert(1)</script>"},
                      {"type": "table", "columns": ["<th>"], "rows": [["x & y"]], "caption": ""},
                      {"type": "gallery", "caption": "", "items": [{"src": "a.png", "title": "t\"q",
                                                                    "lines": [["caption", "a <red> circle"]]}]}]}
    page = report.render_page("quick", ("captioning",), {"captioning": rec}, {"environment": {}})
    assert "quick mode: smaller settings" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt;red&gt; circle" in page and "x &amp; y" in page and "t&quot;q" in page
    full = report.render_page("full", ("captioning",), {"captioning": rec}, {"environment": {}})
    assert "quick mode: smaller settings" not in full


def test_settings_cover_every_mode_and_stage():
    for mode in ("tiny", "quick", "full"):
        assert set(SETTINGS[mode]) == set(STAGES)
        for name in STAGES:
            assert SETTINGS[mode][name]["steps"] >= 1
    # the quick settings are smaller than the full ones
    assert SETTINGS["quick"]["style"]["iterations"] < SETTINGS["full"]["style"]["iterations"]
    assert SETTINGS["quick"]["gan"]["semisup_epochs"] < SETTINGS["full"]["gan"]["semisup_epochs"]
    # every mode orders the GAN stage's five jobs (an order per mode, all of them once)
    from a3ext.demo.stages import _JOB_ORDER
    from a3ext.gan import KINDS
    assert set(_JOB_ORDER) == set(SETTINGS)
    for order in _JOB_ORDER.values():
        assert sorted(order) == sorted([*KINDS, "semisup"])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    pytest.fail("headless Chromium is not installed; install it with `bash scripts/install_chromium.sh` "
                "(Debian package `chromium`; CI installs it)")


def test_page_renders_in_headless_chromium(tiny_run, tmp_path):
    out, _, _ = tiny_run
    exe = _chromium()
    shot = tmp_path / "shot.png"
    profile = tempfile.mkdtemp(prefix="a3ext-chromium-", dir=tmp_path)
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,2000",
           (out / "index.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        px = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert px.std() > 10.0, f"screenshot is blank (pixel std {px.std():.2f})"
    colours = np.unique(px.reshape(-1, 3)[::7].astype(np.uint8), axis=0)
    assert len(colours) > 50, f"screenshot has only {len(colours)} colours"


def test_gan_stage_jobs_give_the_same_results_in_worker_processes(tmp_path):
    """The GAN stage runs its trainings in a JobPool: two spawned single-threaded
    workers give exactly what the same jobs give in this process at one thread, and a
    job's exception reaches the caller."""
    import torch

    from a3ext.demo.runner import JobPool
    from a3ext.gan import load_digits

    s = SETTINGS["tiny"]["gan"]
    digits = load_digits("mnist5k", seed=0).train
    images, labels = digits.images[:256], digits.labels[:256]

    def jobs(prefix):
        out = {k: (stages._gan_job, (k, images, labels, s, tmp_path / f"{prefix}_{k}")) for k in ("dc", "vanilla")}
        out["bad"] = (stages._gan_job, ("painting", images, labels, s, tmp_path / f"{prefix}_bad"))
        out["threads"] = (torch.get_num_threads, ())
        return out

    with JobPool(jobs("par"), threads=2) as pool:
        assert (pool.workers, pool.threads_per_worker) == (2, 1)
        par = {k: pool.result(k) for k in ("dc", "vanilla")}
        assert pool.result("threads") == 1
        with pytest.raises(KeyError, match="painting"):
            pool.result("bad")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with JobPool(jobs("seq"), threads=1) as pool:
            assert pool.workers == 1
            seq = {k: pool.result(k) for k in ("dc", "vanilla")}
    finally:
        torch.set_num_threads(previous)
    for k in ("dc", "vanilla"):
        assert par[k]["parallel"] and not seq[k]["parallel"]
        assert par[k]["threads"] == seq[k]["threads"] == 1
        assert par[k]["iterations"] == seq[k]["iterations"] == s["iterations"][k]
        assert par[k]["history"] == seq[k]["history"]
        assert torch.equal(par[k]["images"], seq[k]["images"])


def test_job_pool_with_no_jobs_or_one_left_keeps_the_thread_count():
    """A stage resumed with every job done starts no worker; one with a single job
    left runs it here, on the thread count it would have had in a worker."""
    import torch

    from a3ext.demo.runner import JobPool

    with JobPool({}, threads=2, planned=5) as pool:
        assert pool.workers == 1
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with JobPool({"n": (torch.get_num_threads, ())}, threads=2, planned=5) as pool:
            assert (pool.workers, pool.threads_per_worker) == (1, 1)
            assert pool.result("n") == 1
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(previous)


def test_job_pool_falls_back_to_this_process_when_workers_cannot_start(tmp_path):
    """A script without `if __name__ == "__main__":` makes every spawned worker fail
    while it re-imports the script; the pool then runs the jobs here, with a warning
    that says why, and run_demo refuses to run inside such a starting worker."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text("import torch\n"
                      "from a3ext.demo.runner import JobPool\n"
                      "with JobPool({'a': (torch.get_num_threads, ()), 'b': (torch.get_num_threads, ())},\n"
                      "             threads=2) as pool:\n"
                      "    print('RESULT', pool.result('a'), pool.result('b'), flush=True)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESULT 1 1" in out.stdout
    assert "the worker processes failed" in out.stderr and "__name__ == '__main__'" in out.stderr

    demo_script = tmp_path / "unguarded_demo.py"
    demo_script.write_text("import multiprocessing\n"
                           "from a3ext.demo import run_demo\n"
                           "multiprocessing.current_process()._inheriting = True  # as while a worker starts\n"
                           "try:\n"
                           "    run_demo('out', tiny=True, progress=False)\n"
                           "except RuntimeError as e:\n"
                           "    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, str(demo_script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert "REFUSED run_demo was called while a worker process" in out.stdout, out.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # nothing written
