"""Image folders decoded once into a cache of uint8 images, read from disk on every later run.

A folder of 8-bit PNG/JPEG images (e.g. CelebA's ``img_align_celeba/``, 202,599 JPEGs) is decoded
one image at a time (a JPEG straight at a reduced scale when it is to be shrunk, ``Image.draft``),
centre-cropped (``crop``) and resized (``resize``) as asked, and written once as an ``.npy`` of
(N, H, W, C) bytes under :func:`cache_dir`, named by the folder and a key of its file list (names,
sizes, modification times) and the options: a later run with the same folder and options opens that
file (:func:`vaekit.byterows.open_npy`) and starts in seconds; a changed, added or removed file
changes the key, so the cache is rebuilt (and the folder's older caches removed). The file is
written under a temporary name and renamed when complete, so that a killed run or two concurrent
runs never leave, or read, a partial cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError
from tqdm.auto import tqdm

from vaekit import limits, storage
from vaekit.byterows import ByteRows, open_npy
from vaekit.errors import VaekitError

Size = tuple[int, int]  # (H, W)
Crop = Size | str  # (H, W) of a centre crop, or "square": the largest centred square
SQUARE = "square"
CACHE_VERSION = 1  # in the key: a change of how images are decoded makes new caches
GREY_MODES = {"1", "L"}  # 8-bit modes stored with one channel (all others as RGB)


def cache_dir() -> Path:
    """Where caches live: ``$VAEKIT_CACHE``, else ``$XDG_CACHE_HOME/vaekit`` (``~/.cache/vaekit``)."""
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaekit"


def crop_box(width: int, height: int, crop: Crop) -> tuple[int, int, int, int]:
    """The centred (left, upper, right, lower) box of ``crop`` in a width x height image."""
    h, w = (min(width, height),) * 2 if crop == SQUARE else crop
    if h > height or w > width:
        raise ValueError(f"a {h}x{w} crop is larger than the {height}x{width} image (HxW)")
    left, upper = (width - w) // 2, (height - h) // 2
    return left, upper, left + w, upper + h


def _key(folder: Path, files: list[Path], resize: Size | None, crop: Crop | None) -> str:
    """SHA-256 of the folder's file list (relative names, sizes, mtimes) and the options."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, list(resize or []), crop]).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _headers(files: list[Path]) -> tuple[bool, set[tuple[int, int]]] | None:
    """(any colour image, the (W, H) sizes) from the files' headers; None if one is not 8-bit
    (or unreadable: the caller's reader says why)."""
    colour, sizes = False, set()
    for p in files:
        try:
            with storage.open_regular(p) as f, warnings.catch_warnings(), Image.open(f) as im:
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if ImageMode.getmode(im.mode).typestr not in ("|u1", "|b1"):  # 16-bit, 32-bit, float
                    return None
                colour, sizes = colour or im.mode not in GREY_MODES, sizes | {im.size}
        except (OSError, UnidentifiedImageError, ValueError, VaekitError, Image.DecompressionBombError):
            return None
    return colour, sizes


def _draft(out: Size, crop: Crop | None) -> Callable[[int, int], tuple[int, int] | None]:
    """The smallest (W, H) a width x height JPEG may be decoded at (``Image.draft`` scales by 1/2,
    1/4 or 1/8 and keeps at least that) so that its crop still holds ``out`` (H, W) pixels; None
    for an explicit crop, whose size is in the full image's pixels."""

    def size(width: int, height: int) -> tuple[int, int] | None:
        if isinstance(crop, tuple):
            return None
        side = min(width, height) if crop == SQUARE else None
        scale = max(out[1] / (side or width), out[0] / (side or height))
        return (math.ceil(width * scale), math.ceil(height * scale)) if scale < 1 else None

    return size


def _decode(
    p: Path, opener: Callable[..., Image.Image], out: Size, resize: Size | None, crop: Crop | None, mode: str
) -> np.ndarray:
    """One image as (H, W, C) bytes: decoded (a JPEG at the smallest scale that keeps the output's
    resolution), cropped, resized, converted to ``mode``."""
    im = opener(p, draft=_draft(out, crop) if resize is not None else None)
    if crop is not None:
        im = im.crop(crop_box(im.width, im.height, crop))
    if resize is not None:
        im = im.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(im.convert(mode), dtype=np.uint8)
    return pixels.reshape(*pixels.shape[:2], -1)


def cached_folder(
    folder: Path,
    files: list[Path],
    opener: Callable[..., Image.Image],
    resize: Size | None = None,
    crop: Crop | None = None,
    progress: bool = True,
) -> tuple[ByteRows, tuple[int, int, int]] | None:
    """The images of ``files`` (below ``folder``) as byte rows read from disk and their (C, H, W),
    from the cache, built first if needed; None when an image is not 8-bit (the caller reads floats).

    opener : opens an image checked against :mod:`vaekit.limits`; its ``draft`` (W, H) -> (W, H)
        or None is the smallest size a JPEG may be decoded at
    """
    key = _key(folder, files, resize, crop)
    base = cache_dir() / "images"
    stem = f"{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}-"
    path = base / f"{stem}{key}.npy"
    if not path.exists():
        headers = _headers(files)
        if headers is None:
            return None
        colour, sizes = headers
        if resize is None and crop is None and len(sizes) > 1:
            raise VaekitError(
                f"{folder}: images have {len(sizes)} different sizes "
                f"{sorted(f'{h}x{w}' for w, h in sizes)[:3]} (HxW)...; "
                "pass --resize HxW (or --crop) to make them one size"
            )
        out = resize or (crop if isinstance(crop, tuple) else None)
        if out is None:
            w, h = next(iter(sizes))
            out = (min(w, h),) * 2 if crop == SQUARE else (h, w)
            if crop == SQUARE and len({min(s) for s in sizes}) > 1:
                raise VaekitError(f"{folder}: square crops of these images differ in size; add --resize HxW")
        _build(path, folder, files, opener, out, resize, crop, "RGB" if colour else "L", progress)
        for old in base.glob(f"{stem}*.npy"):  # the folder's caches of older file lists and options
            if old != path and not old.name.startswith("."):
                old.unlink(missing_ok=True)
    mapped = open_npy(path)
    if mapped is None:
        raise VaekitError(f"{path}: not a vaekit image cache; remove it")
    return mapped  # type: ignore[return-value]


def _build(
    path: Path,
    folder: Path,
    files: list[Path],
    opener: Callable[..., Image.Image],
    out: Size,
    resize: Size | None,
    crop: Crop | None,
    mode: str,
    progress: bool,
) -> None:
    """Write the cache: the .npy header, then one image at a time, under a temporary name."""
    channels = 3 if mode == "RGB" else 1
    shape = (len(files), *out, channels)
    limits.check_mapped(folder, int(np.prod(shape)))
    storage.make_folder(path.parent, "image cache folder")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.part"
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    try:
        with open(tmp, "xb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            # a bar on a terminal only (disable=None), so that errors stay one line in logs
            bar = tqdm(files, disable=None if progress else True, unit="image", desc=f"caching {folder.name}")
            for p in bar:
                pixels = _decode(p, opener, out, resize, crop, mode)
                if pixels.shape != shape[1:]:
                    h, w = pixels.shape[:2]
                    raise VaekitError(f"{p}: is {h}x{w} (HxW) after --crop, the others {out[0]}x{out[1]}")
                f.write(pixels.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise VaekitError(f"{path}: cannot write the image cache ({e.strerror or e})") from e
    finally:
        tmp.unlink(missing_ok=True)
