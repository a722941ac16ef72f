"""Every ``a3ext`` subcommand answers a bad file -- missing, unreadable, not an image, a
corrupt checkpoint, a missing data directory -- with ONE line on stderr that names the
file, and exit status 2 (the one error-reporting path, :mod:`a3ext._cli_util`);
``A3EXT_TRACEBACK=1`` gives the traceback instead. Run through the face,
:func:`a3ext.cli.main`, as the ``a3ext`` command does (and once as a real process)."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from PIL import Image

from a3ext import _cli_util
from a3ext.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "notes.jpg").write_text("shopping list: milk, eggs\n")  # a text file named like an image
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
    (d / "truncated.png").write_bytes(buf.getvalue()[:60])  # a PNG cut short
    (d / "junk.pt").write_text("not a checkpoint")
    (d / "empty.pt").write_bytes(b"")
    (d / "a_file").write_text("a file where a directory is expected")
    return d


def bad(argv, capsys, name: str) -> str:
    """Run ``a3ext *argv``: exit status 2 and one stderr line that names ``name``."""
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status == 2, (argv, err)
    assert len(lines) == 1, (argv, err)
    assert name in lines[0], (argv, err)
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- visualize


@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "ig", "gradcam", "fool"])
def test_visualize_image_that_is_not_an_image(files, tmp_path, capsys, method):
    target = ["--target", "goldfish"] if method == "fool" else []
    line = bad(["visualize", method, "--image", files / "notes.jpg", *target, "--size", "32",
                "--out", tmp_path / "x.png"], capsys, "notes.jpg")
    assert line.startswith(f"a3ext visualize {method}: --image") and "cannot identify image file" in line
    assert not (tmp_path / "x.png").exists()


def test_visualize_truncated_missing_image_and_bad_weights(files, tmp_path, capsys):
    out = ["--size", "32", "--out", tmp_path / "x.png"]
    bad(["visualize", "saliency", "--image", files / "truncated.png", *out], capsys, "truncated.png")
    bad(["visualize", "saliency", "--image", tmp_path / "gone.png", *out], capsys, "gone.png")
    bad(["visualize", "saliency", "--image", "coffee", "--model", "squeezenet", "--weights", files / "junk.pt",
         *out], capsys, "junk.pt")
    bad(["visualize", "classviz", "--target", "goldfish", "--weights", files / "notes.jpg", *out], capsys,
        "notes.jpg")
    bad(["visualize", "classviz", "--target", "goldfish", "--model", "squeezenet", "--weights",
         tmp_path / "nope.pth", *out], capsys, "nope.pth")


# --------------------------------------------------------------------------- style


def test_style_bad_images_and_weights(files, tmp_path, capsys):
    run = ["--size", "32", "--iters", "1", "--no-progress", "--out", tmp_path / "x.png"]
    line = bad(["style", "--content", files / "notes.jpg", "--style", "scream", *run], capsys, "notes.jpg")
    assert line.startswith("a3ext style: --content")
    line = bad(["style", "--content", "chelsea", "--style", files / "truncated.png", *run], capsys, "truncated.png")
    assert line.startswith("a3ext style: --style")
    bad(["style", "--content", "chelsea", "--style", "scream", "--style", tmp_path / "gone.jpg", *run], capsys,
        "gone.jpg")
    bad(["style", "--preset", "starry_night", "--model", "squeezenet", "--weights", files / "empty.pt", *run],
        capsys, "empty.pt")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- caption


def test_caption_bad_checkpoint_and_data(files, tmp_path, capsys):
    missing = tmp_path / "no_coco_here"
    bad(["caption", "train", "--data", missing, "--checkpoint-dir", tmp_path / "ck", "--quiet"], capsys,
        "no_coco_here")
    bad(["caption", "eval", "--data", missing, "--checkpoint", files / "junk.pt"], capsys, "junk.pt")
    for ck in ("junk.pt", "empty.pt", "notes.jpg"):
        bad(["caption", "sample", "--data", missing, "--checkpoint", files / ck], capsys, ck)
    bad(["caption", "sample", "--data", missing, "--checkpoint", tmp_path / "gone.pt"], capsys, "gone.pt")
    bad(["caption", "make-dataset", "--out", files / "a_file" / "sub", "--num-train", "3", "--num-val", "3",
         "--features", "pixels", "--no-images"], capsys, "a_file")


# --------------------------------------------------------------------------- gan


def test_gan_bad_checkpoint_and_data(files, tmp_path, capsys):
    for ck in ("junk.pt", "empty.pt", "notes.jpg"):
        line = bad(["gan", "sample", "--checkpoint", files / ck, "--out", tmp_path / "g.png"], capsys, ck)
        assert line.startswith("a3ext gan sample: --checkpoint")
    bad(["gan", "sample", "--checkpoint", tmp_path / "gone.pt", "--out", tmp_path / "g.png"], capsys, "gone.pt")
    bad(["gan", "score", "--checkpoint", files / "junk.pt"], capsys, "junk.pt")
    bad(["gan", "train", "--data", tmp_path / "no_digits", "--out", tmp_path / "run", "-q"], capsys, "no_digits")
    bad(["gan", "train", "--data", files / "notes.jpg", "--out", tmp_path / "run", "-q"], capsys, "notes.jpg")
    bad(["gan", "semisup", "--data", tmp_path / "no_digits", "--epochs", "1", "--no-progress"], capsys, "no_digits")
    # --resume from a corrupt checkpoint in --out
    run = tmp_path / "resume"
    run.mkdir()
    (run / "checkpoint.pt").write_text("garbage")
    bad(["gan", "train", "--data", "mnist5k", "--out", run, "--resume", "--max-iterations", "1", "-q",
         "--no-progress"], capsys, "checkpoint.pt")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("lr", ["0", "-1", "inf", "nan", "abc"])
def test_gan_learning_rate_must_be_a_finite_positive_number(lr, tmp_path, capsys):
    for cmd in (["gan", "semisup", "--epochs", "1"], ["gan", "train", "--out", str(tmp_path / "run")]):
        with pytest.raises(SystemExit) as e:
            main(cmd + ["--lr", lr])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "argument --lr: expected a positive finite number" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["style", "--preset", "starry_night", "--out", "x.png", "--content-weight", "nan"],
     "argument --content-weight: expected a non-negative finite number, got nan"),
    (["style", "--preset", "starry_night", "--out", "x.png", "--tv-weight", "-5"],
     "argument --tv-weight: expected a non-negative finite number, got -5.0"),
    (["style", "--preset", "starry_night", "--out", "x.png", "--style-weights", "1,-2"],
     "argument --style-weights: expected non-negative numbers separated by commas, got '1,-2'"),
    (["style", "--preset", "starry_night", "--out", "x.png", "--softmax-temperature", "1", "--plain-gram"],
     "argument --plain-gram: not allowed with argument --softmax-temperature"),
    (["caption", "sample", "--data", "d", "--checkpoint", "c", "--num", "-1"],
     "argument --num: expected a positive integer, got -1"),
    (["caption", "sample", "--data", "d", "--checkpoint", "c", "--scene-seed", "-3"],
     "argument --scene-seed: expected a non-negative integer, got -3"),
    (["caption", "sample", "--data", "d", "--checkpoint", "c", "--beam-size", "0"],
     "argument --beam-size: expected a positive integer, got 0"),
    (["caption", "eval", "--data", "d", "--checkpoint", "c", "--num-images", "0"],
     "argument --num-images: expected a positive integer, got 0"),
    (["caption", "train", "--data", "d", "--max-train", "0"], "argument --max-train: expected a positive integer, got 0"),
    (["caption", "make-dataset", "--out", "d", "--num-train", "0"],
     "argument --num-train: expected a positive integer, got 0"),
    (["caption", "make-dataset", "--out", "d", "--pca-dim", "0"], "argument --pca-dim: expected a positive integer, got 0"),
])
def test_out_of_range_numbers_are_refused_by_name(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_version_and_subcommand_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("a3ext ") and "torch" in out
    for part in ("caption", "gan", "visualize", "assets"):
        with pytest.raises(SystemExit):
            main([part, "--help"])
        assert "``" not in capsys.readouterr().out  # reStructuredText quotes stay in the docstrings
    with pytest.raises(SystemExit):
        main(["caption", "train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default lstm)", "(default 512)", "(default 256)", "(default float32)", "(default adam)",
                  "(default 100)", "(default ./caption_checkpoints)"):
        assert shown in text, shown


# --------------------------------------------------------------------------- assets, demo


def test_assets_cache_dir_that_is_a_file(files, monkeypatch, capsys):
    monkeypatch.setenv("A3EXT_HOME", str(files / "a_file"))
    status = main(["assets", "fetch", "-q", "coffee"])
    err = capsys.readouterr().err
    assert status != 0 and "a_file" in err and "Traceback" not in err


def test_demo_out_that_is_a_file(files, capsys):
    bad(["demo", "--tiny", "--parts", "style", "--no-progress", "--out", files / "a_file"], capsys, "a_file")


# --------------------------------------------------------------------------- the path itself


def test_reading_names_the_option_and_the_file():
    with pytest.raises(_cli_util.UserInputError, match=r"^--image x\.png: boom$"):
        with _cli_util.reading("x.png", "--image"):
            raise RuntimeError("boom\nsecond line")
    with pytest.raises(_cli_util.UserInputError, match=r"^--data: No such file or directory: d$"):
        with _cli_util.reading("d", "--data"):
            raise FileNotFoundError(2, "No such file or directory", "d")
    assert _cli_util.describe(KeyError("word_to_idx")) == "KeyError: 'word_to_idx'"


def test_a_bug_is_not_reported_as_bad_input(capsys):
    def handler(args):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        _cli_util.run_handler("a3ext x", handler, None)


def test_real_process_one_line_and_traceback_on_request(files, tmp_path):
    argv = [sys.executable, "-m", "a3ext", "visualize", "saliency", "--image", str(files / "notes.jpg"),
            "--size", "32", "--out", str(tmp_path / "x.png")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "notes.jpg" in r.stderr, r.stderr
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, "A3EXT_TRACEBACK": "1"})
    assert r.returncode == 1 and "Traceback" in r.stderr and "UnidentifiedImageError" in r.stderr
