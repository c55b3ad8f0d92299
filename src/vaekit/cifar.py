"""CIFAR-10 (Krizhevsky 2009): its binary release read from the archive, never unpickled.

The binary version is plain records: a label byte, then 3,072 pixel bytes (the 1,024 red values
of a 32x32 image row by row, then green, then blue), which is already (C, H, W) order; five
training files of 10,000 records and one test file (``cifar-10-batches-bin/``). It is read
from ``$VAEKIT_DATA`` (the archive, or the folder it unpacks to), else downloaded once from the
official release into the cache, its MD5 checked before it is kept under its name.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from vaekit import storage
from vaekit.errors import VaekitError
from vaekit.imagecache import cache_dir

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # of the archive, as published beside it
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META = "batches.meta.txt"  # the class names, one a line
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32  # bytes of one example: label, then pixels
MAX_FILE_BYTES = 10_000 * RECORD  # a batch file of the release


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with storage.open_regular(path) as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, target: Path) -> Path:
    """Download the archive to ``target`` through a temporary file, kept only if its MD5 is right."""
    storage.make_folder(target.parent, "data cache folder")
    part = target.parent / f".{target.name}.{secrets.token_hex(8)}.part"
    try:
        with open(part, "xb") as tmp, urllib.request.urlopen(url, timeout=30) as r:
            shutil.copyfileobj(r, tmp)
        if _md5(part) != MD5:
            raise VaekitError(f"{url}: checksum mismatch (the download is corrupt or not CIFAR-10's)")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target


def _records(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3072) uint8 pixels in (C, H, W) order and (n,) labels of one batch file's bytes."""
    if not raw or len(raw) % RECORD:
        raise VaekitError(
            f"{where}: {len(raw)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records"
        )
    table = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    labels = table[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise VaekitError(f"{where}: holds label {labels.max()}; CIFAR-10's are 0 to 9")
    return table[:, 1:].copy(), labels


def _member(get: object, name: str, where: str) -> bytes:
    data = get(name)  # type: ignore[operator]
    if data is None:
        raise VaekitError(f"{where}: has no {name}")
    return data


def _read(where: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The splits (x_train, y_train, x_test, y_test) and class names from the archive or its folder."""
    if where.is_dir():

        def get(name: str) -> bytes | None:
            path = where / name
            return storage.read_bytes(path, MAX_FILE_BYTES) if path.exists() else None

        return _splits(get, str(where))
    try:
        with storage.open_regular(where) as f, tarfile.open(fileobj=f, mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile() and m.size <= MAX_FILE_BYTES}

            def get(name: str) -> bytes | None:
                member = members.get(f"{FOLDER}/{name}")
                return tar.extractfile(member).read() if member is not None else None  # type: ignore[union-attr]

            return _splits(get, str(where))
    except (OSError, tarfile.TarError, EOFError) as e:
        raise VaekitError(f"{where}: not a readable CIFAR-10 archive ({e})") from e


def _splits(get: object, where: str) -> tuple[dict[str, np.ndarray], list[str]]:
    arrays = {}
    for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        parts = [_records(_member(get, n, where), f"{where}/{n}") for n in names]
        arrays[f"x_{split}"] = np.concatenate([p[0] for p in parts])
        arrays[f"y_{split}"] = np.concatenate([p[1] for p in parts])
    classes = [c for c in _member(get, META, where).decode("ascii", "replace").split("\n") if c.strip()]
    return arrays, classes[:10]


def read_cifar10(url: str = URL) -> tuple[dict[str, np.ndarray], list[str], str]:
    """CIFAR-10's splits ((n, 3072) uint8 pixels, (n,) labels), class names, and where they were read.

    Looked for in ``$VAEKIT_DATA`` (the archive or ``cifar-10-batches-bin/``), then in the cache
    (``$VAEKIT_CACHE``, else ``~/.cache/vaekit``), else downloaded there from ``url``.
    """
    places = []
    if os.environ.get("VAEKIT_DATA"):
        places += [Path(os.environ["VAEKIT_DATA"]) / FOLDER, Path(os.environ["VAEKIT_DATA"]) / ARCHIVE]
    cached = cache_dir() / ARCHIVE
    for where in (*places, cached):
        if where.exists():
            return (*_read(where), str(where))
    try:
        download(url, cached)
    except OSError as e:
        looked = "".join(f"{p}, " for p in places)
        raise VaekitError(
            f"cifar10 not found in {looked}{cached} and the download from {url} failed ({e}); "
            "download it yourself and set VAEKIT_DATA to its folder"
        ) from e
    return (*_read(cached), str(cached))
