"""Packaging: the version guard on import, the CLI entry points."""
import subprocess
import sys

import pytest


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_refuses_library_built_for_another_torch():
    # Pretend another torch is installed: the import must fail with a clear message.
    r = _run("import torch; torch.__version__ = '9.9.9'; import a3ext")
    assert r.returncode != 0
    assert "ImportError" in r.stderr
    assert "built against torch" in r.stderr and "9.9.9" in r.stderr
    assert "pip install --no-build-isolation" in r.stderr


def test_cli_help_and_selftest():
    r = subprocess.run([sys.executable, "-m", "a3ext", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "selftest" in r.stdout
    r = subprocess.run([sys.executable, "-m", "a3ext", "selftest"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all ops agree with the reference" in r.stdout
    for op in ("rnn", "rnn_step", "lstm", "lstm_step", "rnn_packed", "lstm_packed", "gram", "gram_blocked"):
        for dtype in ("float64", "float32"):  # every op in both dtypes, and each row passed
            assert any(ln.split()[:2] == [op, dtype] and ln.rstrip().endswith("ok")
                       for ln in r.stdout.splitlines()), (op, dtype, r.stdout)


def test_cli_unknown_command_is_an_error():
    r = subprocess.run([sys.executable, "-m", "a3ext", "frobnicate"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice" in r.stderr
