"""Checkpoint reliability (a3ext.checkpoint) for both trainers: digest-verified loads
(every flipped bit refused or harmless), the same one-line errors for missing, empty,
truncated, foreign, wrong-kind and damaged files, old-format files with a warning,
stale temporaries of killed saves removed, and a full disk reported with the previous
checkpoint intact."""
from __future__ import annotations

import collections
import errno
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from a3ext import checkpoint as C
from a3ext import gan
from a3ext._util import remove_stale_temporaries
from a3ext.captioning import data as D
from a3ext.captioning import solver as SV
from a3ext.captioning import synthetic as S
from a3ext.captioning.model import CaptioningRNN

TEST_KIND = C.Kind("test", "a3ext test checkpoint")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ real trainer states

@pytest.fixture(scope="module")
def cap_data(tmp_path_factory):
    base = tmp_path_factory.mktemp("cap") / "synthetic"
    S.make_dataset(base, num_train=30, num_val=5, seed=0, features="pixels", pca_dim=16, save_images=False)
    return D.load_coco_data(base)


def _cap_solver(data, **kw):
    torch.manual_seed(0)
    model = CaptioningRNN(data["word_to_idx"], data["train_features"].shape[1], 8, 12, "lstm")
    return SV.CaptioningSolver(model, data, update_rule="adam", optim_config={"learning_rate": 5e-3},
                               batch_size=10, num_epochs=2, verbose=False, eval_bleu=False, max_length=8, **kw)


def _gan_trainer(out_dir=None):
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 10, (24,), generator=g)
    spec = gan.build_gan("ls", noise_dim=8, seed=1)
    D_, G_ = spec["D"], spec["G"]
    return gan.GANTrainer(D_, G_, gan.get_optimizer(D_, spec["lr"], spec["betas"]),
                          gan.get_optimizer(G_, spec["lr"], spec["betas"]), spec["discriminator_loss"],
                          spec["generator_loss"], gan.BatchLoader(images, labels, batch_size=8, seed=1),
                          batch_size=8, noise_size=8, seed=1, progress=False, log=None, kind="ls",
                          out_dir=out_dir, sample_every=100)


@pytest.fixture(scope="module")
def trained(cap_data, tmp_path_factory):
    """One real checkpoint of each trainer (after 2 training steps, optimizer state included)."""
    root = tmp_path_factory.mktemp("trained")
    s = _cap_solver(cap_data)
    s.train(max_iterations=2)
    s.save(root / "cap.pt")
    tr = _gan_trainer()
    tr.train(num_epochs=1, max_iterations=2)
    tr.save_checkpoint(root / "gan.pt")
    return {"captioning": (root / "cap.pt", SV.load_checkpoint, s.state_dict()),
            "gan": (root / "gan.pt", gan.load_checkpoint, tr.state_dict())}


BOTH = ["captioning", "gan"]
LABEL = {"captioning": "a3ext captioning checkpoint", "gan": "a3ext GAN checkpoint"}


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _one_line_naming(exc: BaseException, path: Path) -> str:
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def _tensor_records(path: Path) -> list[tuple[str, int, int]]:
    """(name, offset of the first data byte, size) of every tensor storage in a torch.save zip."""
    out = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if "/data/" in info.filename and info.file_size:
                o = info.header_offset
                name_len = int.from_bytes(raw[o + 26:o + 28], "little")
                extra_len = int.from_bytes(raw[o + 28:o + 30], "little")
                out.append((info.filename, o + 30 + name_len + extra_len, info.file_size))
    return out


class Foreign:
    """Stands for any pickled Python class: weights_only loading must refuse it."""


# ------------------------------------------------------------------ the digest

def test_roundtrip_keeps_every_value_and_hides_the_integrity_entry(tmp_path):
    base = torch.arange(12, dtype=torch.float64).reshape(3, 4)
    state = {"t": base, "view": base.t(), "slice": base[1:, 2:], "p": torch.nn.Parameter(torch.ones(2)),
             "lin": torch.nn.Linear(3, 2).state_dict(), "i": 7, "f": float("nan"), "c": 1 - 2j, "s": "é",
             "b": b"\x00\x01", "n": None, "flag": True, "l": [1, (2.5, "x")], "size": torch.Size([2, 3]),
             "dtype": torch.bfloat16, "dev": torch.device("cpu"), 3: "int key",
             "half": torch.randn(5).to(torch.bfloat16), "empty": torch.empty(0, 4), "cplx": torch.randn(3, dtype=torch.cfloat),
             "bool": torch.tensor([True, False]), "od": collections.OrderedDict(a=1)}
    path = C.save(state, tmp_path / "x.pt", TEST_KIND)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = C.load(path, TEST_KIND)
    assert C.INTEGRITY_KEY not in back and list(back) == list(state)
    for k in state:
        if k == "f":
            assert back[k] != back[k]
        else:
            assert _same(back[k], state[k]), k
    assert back["view"].untyped_storage().data_ptr() == back["t"].untyped_storage().data_ptr()  # sharing kept
    assert back["lin"]._metadata == state["lin"]._metadata
    # torch.load alone (or an older a3ext) still reads the file: the entry is one more dict key
    raw = torch.load(path, weights_only=True)
    assert raw[C.INTEGRITY_KEY]["kind"] == "test" and len(raw[C.INTEGRITY_KEY]["sha256"]) == 64


def test_kind_by_name_and_bad_kinds_get_clear_errors(tmp_path):
    path = C.save({"a": torch.ones(2)}, tmp_path / "x.pt", "gan")  # the name of a registered kind
    assert torch.equal(C.load(path, "gan")["a"], torch.ones(2))
    from a3ext.gan.train import CHECKPOINT_KIND
    assert torch.equal(C.load(path, CHECKPOINT_KIND)["a"], torch.ones(2))
    with pytest.raises(C.CheckpointError, match="a3ext GAN checkpoint"):
        C.load(path, "captioning")
    with pytest.raises(C.CheckpointError, match="a3ext digit-quality model"):
        C.load(path, "gan-quality")
    with pytest.raises(ValueError, match=r"checkpoint.load: unknown kind 'nope'; expected .*'captioning', 'gan'"):
        C.load(path, "nope")
    with pytest.raises(TypeError, match="checkpoint.save: kind must be a checkpoint.Kind or the name of one .*NoneType"):
        C.save({"a": 1}, tmp_path / "y.pt", None)
    assert not (tmp_path / "y.pt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask):
    """Atomic writes go through mkstemp (mode 0600); the file must end up as a plain
    open() would make it, 0666 minus the umask, so a report or checkpoint can be shared."""
    before = os.umask(umask)
    try:
        path = C.save({"a": 1}, tmp_path / "x.pt", TEST_KIND)
    finally:
        os.umask(before)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask
    # a file that is replaced keeps its own mode (a user's chmod 600 survives the next save)
    os.chmod(path, 0o600)
    C.save({"a": 2}, path, TEST_KIND)
    assert (path.stat().st_mode & 0o777) == 0o600


def test_demo_pictures_get_the_mode_open_would_give(tmp_path):
    from a3ext.demo.runner import StageContext  # writes the page's PNGs
    before = os.umask(0o022)
    try:
        ctx = StageContext("stage", tmp_path, "tiny", {})
        name = ctx.png("x", lambda p: Path(p).write_bytes(b"\x89PNG"))
    finally:
        os.umask(before)
    assert ((tmp_path / name).stat().st_mode & 0o777) == 0o644


def test_digest_covers_bytes_metadata_and_structure():
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    ref = C.digest({"w": base, "n": 1})
    changed = base.clone()
    changed.view(torch.int32)[1, 2] ^= 1  # one bit of one float
    variants = [{"w": changed, "n": 1}, {"w": base, "n": 2}, {"w": base, "m": 1}, {"n": 1, "w": base},
                {"w": base.double(), "n": 1}, {"w": base.reshape(3, 2), "n": 1}, {"w": base.t(), "n": 1},
                {"w": base[:, :2], "n": 1}, {"w": base, "n": 1.0}, {"w": base, "n": True},
                {"w": base.requires_grad_(False).clone().requires_grad_(), "n": 1}, {"w": [base], "n": 1},
                {"w": base, "n": (1,)}]
    digests = [C.digest(v) for v in variants]
    assert ref not in digests and len(set(digests)) == len(digests)
    assert C.digest({"w": base.clone(), "n": 1}) == ref  # contents, not identity
    assert C.digest({"w": base}, {"kind": "a"}) != C.digest({"w": base}, {"kind": "b"})


def test_save_refuses_what_weights_only_cannot_load(tmp_path):
    path = tmp_path / "c.pt"
    C.save({"x": torch.ones(2)}, path, TEST_KIND)
    before = path.read_bytes()
    for bad in ({"a": np.ones(3)}, {"a": {"b": np.float32(1)}}, {"a": object()}, {"a": {1, 2}}):
        with pytest.raises(TypeError, match=r"state\[.a.\]"):
            C.save(bad, path, TEST_KIND)
    with pytest.raises(TypeError, match="must be a dict"):
        C.save([torch.ones(1)], path, TEST_KIND)
    with pytest.raises(ValueError, match="reserved"):
        C.save({C.INTEGRITY_KEY: 1}, path, TEST_KIND)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.pt"]


# ------------------------------------------------------------------ corruption

def test_every_single_bit_flip_is_refused_or_harmless(tmp_path):
    """A whole small checkpoint, one flipped bit at every byte: the load raises a
    CheckpointError naming the file, or returns exactly the saved state (zip header
    fields torch does not read, alignment padding, the serialization id)."""
    state = {"format": gan.CHECKPOINT_FORMAT, "iteration": 3, "G": {"w": torch.randn(3, 2), "b": torch.zeros(2)},
             "history": {"d": [0.5, 0.25]}, "rng": torch.get_rng_state()[:16]}
    good = gan.save_checkpoint(state, tmp_path / "good.pt").read_bytes()
    ref = gan.load_checkpoint(tmp_path / "good.pt")
    bad = tmp_path / "bad.pt"
    outcomes = collections.Counter()
    for i in range(len(good)):
        flipped = bytearray(good)
        flipped[i] ^= 1 << (i % 8)
        bad.write_bytes(flipped)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an "unverified" downgrade would be a failure too
                got = gan.load_checkpoint(bad)
        except C.CheckpointError as exc:
            _one_line_naming(exc, bad)
            outcomes["refused"] += 1
        else:
            assert _same(got, ref), f"byte {i}: a flipped bit loaded as different contents"
            outcomes["harmless"] += 1
    assert outcomes["refused"] > len(good) // 4, outcomes


@pytest.mark.parametrize("which", BOTH)
def test_flipped_bit_in_any_tensor_is_refused(trained, tmp_path, which):
    path, load, _ = trained[which]
    raw = path.read_bytes()
    records = _tensor_records(path)
    assert len(records) >= 8
    rng = np.random.default_rng(0)
    for name, start, size in records:
        for pos in {start, start + size - 1, start + int(rng.integers(size))}:
            flipped = bytearray(raw)
            flipped[pos] ^= 1 << int(rng.integers(8))
            bad = tmp_path / f"{which}-flipped.pt"
            bad.write_bytes(flipped)
            with pytest.raises(C.CorruptCheckpointError, match="is corrupt: its contents do not match") as e:
                load(bad)
            _one_line_naming(e.value, bad)


@pytest.mark.parametrize("which", BOTH)
def test_bad_files_get_one_line_errors_naming_the_file(trained, tmp_path, which):
    path, load, _ = trained[which]
    label = LABEL[which]
    raw = path.read_bytes()
    cases = {"missing.pt": (None, C.CheckpointNotFoundError, "no checkpoint at"),
             "empty.pt": (b"", C.CheckpointError, "is empty (0 bytes)"),
             "notes.pt": (b"just some text, not a checkpoint\n", C.CheckpointError,
                          f"corrupt, truncated or not an {label}"),
             "half.pt": (raw[:len(raw) // 2], C.CorruptCheckpointError, "is truncated or corrupt"),
             "short.pt": (raw[:100], C.CorruptCheckpointError, "is truncated or corrupt"),
             "nearly.pt": (raw[:-1], C.CorruptCheckpointError, "is truncated or corrupt")}
    for name, (content, cls, message) in cases.items():
        f = tmp_path / name
        if content is not None:
            f.write_bytes(content)
        with pytest.raises(cls, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            load(f)
        _one_line_naming(e.value, f)
    assert issubclass(C.CheckpointNotFoundError, FileNotFoundError) and issubclass(C.CheckpointError, ValueError)
    with pytest.raises(C.CheckpointError, match="is not a file"):
        load(tmp_path)
    # foreign pickles: refused without running anything
    for name, obj in (("foreign.pt", {"model": Foreign()}), ("numpy.pt", {"x": np.ones(2)})):
        torch.save(obj, tmp_path / name)
        with pytest.raises(C.CheckpointError, match="refers to Python objects other than tensors") as e:
            load(tmp_path / name)
        _one_line_naming(e.value, tmp_path / name)
    # a torch file of something else, a non-dict
    for name, obj in (("other.pt", {"weights": torch.ones(2)}), ("list.pt", [torch.ones(2)])):
        torch.save(obj, tmp_path / name)
        with pytest.raises(C.CheckpointError, match=f"not an {label}"):
            load(tmp_path / name)


def test_wrong_kind_is_named(trained):
    cap, load_cap, _ = trained["captioning"]
    gpath, load_gan, _ = trained["gan"]
    with pytest.raises(C.CheckpointError, match="is an a3ext GAN checkpoint, not an a3ext captioning checkpoint"):
        load_cap(gpath)
    with pytest.raises(C.CheckpointError, match="is an a3ext captioning checkpoint, not an a3ext GAN checkpoint"):
        load_gan(cap)
    with pytest.raises(C.CheckpointError, match="not an a3ext captioning checkpoint"):
        SV.model_from_checkpoint(gpath)
    with pytest.raises(C.CheckpointError, match="not an a3ext GAN checkpoint"):
        gan.load_generator(cap)


# ------------------------------------------------------------------ old format

@pytest.mark.parametrize("which", BOTH)
def test_old_format_loads_with_a_warning_and_resumes(trained, cap_data, tmp_path, which):
    path, load, state = trained[which]
    old = tmp_path / "old.pt"
    torch.save(state, old)  # exactly what a3ext wrote before digests
    with pytest.warns(C.UnverifiedCheckpointWarning, match="cannot be verified"):
        back = load(old)
    assert _same(back, state)
    with pytest.warns(C.UnverifiedCheckpointWarning):
        if which == "captioning":
            s = _cap_solver(cap_data)
            s.load(old)
            assert s.t == state["solver"]["t"]
        else:
            tr = _gan_trainer()
            tr.resume(old)
            assert tr.iteration == state["iteration"]
    # saving again adds the digest: no warning any more
    resaved = tmp_path / "resaved.pt"
    (SV.save_checkpoint_atomic if which == "captioning" else gan.save_checkpoint)(back, resaved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _same(load(resaved), state)
    # an "old" file with a key the old format never had is not taken on trust
    torch.save({**state, "a3ext_integritz": {"sha256": "0" * 64}}, old)
    with pytest.raises(C.CheckpointError, match="no integrity entry"):
        load(old)


# ------------------------------------------------------------------ killed saves, full disk

_KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from a3ext import checkpoint as C
    def killed(fd):
        os.kill(os.getpid(), signal.SIGKILL)
    os.fsync = killed  # die after the data is written, before the rename
    C.save({"x": torch.full((50000,), 2.0)}, sys.argv[1], C.Kind("test", "a3ext test checkpoint"))
""")


def _temporaries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_temporaries_of_killed_saves_are_removed_by_the_next_save_or_load(tmp_path):
    path = tmp_path / "checkpoint.pt"
    C.save({"x": torch.ones(3)}, path, TEST_KIND)
    for _ in range(3):  # each killed save removes its predecessor's temporary first
        proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], capture_output=True, timeout=120)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        left = _temporaries(tmp_path)
        assert len(left) == 1 and (tmp_path / left[0]).stat().st_size > 200000  # full-size
    assert torch.equal(C.load(path, TEST_KIND)["x"], torch.ones(3))  # the previous checkpoint is intact
    assert _temporaries(tmp_path) == []  # ... and the load removed the temporaries
    subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], capture_output=True, timeout=120)
    (tmp_path / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"from an a3ext before the pid was recorded")
    (tmp_path / ".other.pt.p1.abcd1234.tmp").write_bytes(b"another file's temporary: kept")
    (tmp_path / f".checkpoint.pt.p1.abcd1234.tmp").write_bytes(b"a live process (pid 1) may be writing: kept")
    C.save({"x": torch.zeros(3)}, path, TEST_KIND)
    assert _temporaries(tmp_path) == [".checkpoint.pt.p1.abcd1234.tmp", ".other.pt.p1.abcd1234.tmp"]
    assert remove_stale_temporaries(tmp_path / "other.pt") == []  # pid 1 is alive


class _DiskFillsUp:
    """A file that accepts ``room`` bytes, then fails like a full disk."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("which", BOTH)
def test_full_disk_during_save_says_so_and_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch, which):
    path, load, state = trained[which]
    save = SV.save_checkpoint_atomic if which == "captioning" else gan.save_checkpoint
    target = tmp_path / "checkpoint.pt"
    save(state, target)
    before = target.read_bytes()
    real = C.atomic_write
    for room in (0, 1000, len(before) // 2):
        monkeypatch.setattr(C, "atomic_write", lambda p, write: real(p, lambda f: write(_DiskFillsUp(f, room))))
        with pytest.raises(C.CheckpointWriteError, match="the disk is full") as e:
            save(state, target)
        msg = _one_line_naming(e.value, target)
        assert f"the previous checkpoint at {target} is intact" in msg and e.value.errno == errno.ENOSPC
        assert target.read_bytes() == before and _temporaries(tmp_path) == []
    with pytest.raises(C.CheckpointWriteError, match="no checkpoint was written"):
        save(state, tmp_path / "fresh.pt")
    assert not (tmp_path / "fresh.pt").exists()
    monkeypatch.setattr(C, "atomic_write", real)
    assert _same(load(target), state)


def test_full_disk_on_a_real_tiny_filesystem(tmp_path):
    """The same on a 256 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = mnt / "checkpoint.pt"
        C.save({"x": torch.ones(1000)}, path, TEST_KIND)
        with pytest.raises(C.CheckpointWriteError, match="the disk is full.*previous checkpoint at .* is intact"):
            C.save({"x": torch.ones(200000)}, path, TEST_KIND)
        assert torch.equal(C.load(path, TEST_KIND)["x"], torch.ones(1000))
        assert _temporaries(mnt) == []
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_gan_quality_model_file_is_verified(tmp_path):
    """The GAN quality metric's cached classifier goes through the same module: a flipped
    bit is refused, a pre-digest file loads with a warning."""
    import warnings

    from a3ext import checkpoint
    from a3ext.gan.metrics import DigitClassifier, DigitQuality

    torch.manual_seed(0)
    q = DigitQuality(DigitClassifier(10), torch.randn(128), torch.eye(128), {"num_classes": 10})
    path = tmp_path / "quality.pt"
    q.save(path)
    again = DigitQuality.load(path)
    assert torch.equal(again.train_mu, q.train_mu)
    old = tmp_path / "old.pt"
    torch.save(q.state_dict(), old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DigitQuality.load(old)
    assert any(issubclass(w.category, checkpoint.UnverifiedCheckpointWarning) for w in caught)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="quality.pt"):
        DigitQuality.load(path)
