"""Files on disk: atomic writes, JSON and safetensors tensors. Never pickle.

Every write goes to a temporary file in the same folder, is flushed and
fsync'ed, then renamed over the target, so a crash or a full disk leaves the
previous file intact. The file gets the permissions ``open()`` would give it
(0o666 less the umask). Reading refuses floating-point tensors holding NaN or
infinity, which vaekit never writes. Reading takes regular files only (never a named pipe or a
device such as /dev/zero), of at most the size :mod:`vaekit.limits` allows for their kind.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import struct
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit import limits
from vaekit.errors import VaekitError

try:
    import fcntl  # POSIX; on Windows run folders are not locked
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either the old one or the complete new one.

    The new file has mode 0o666 less the process's umask, as ``open(path, "wb")`` would give.
    """
    path = Path(path)
    if not path.parent.exists():  # an output in a new folder (-o out/x.png): made, as train -o makes its
        make_folder(path.parent)
    # not tempfile.mkstemp, whose file is always 0o600: a file created by os.open gets
    # 0o666 & ~umask from the kernel, with no racy os.umask() read-and-restore; O_EXCL
    # refuses an existing file or link, and the name is random as mkstemp's is
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise VaekitError(f"{path.parent}: cannot write here ({e.strerror or e})") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VaekitError(f"{path}: cannot be written ({e.strerror or e})") from e


def make_folder(folder: Path, what: str = "folder") -> None:
    """Create ``folder`` and its parents if missing; one-line VaekitError naming it if that fails.

    A failure part of the way down (a name over 255 bytes, no permission) removes the parents
    this call created, so that a refused folder leaves nothing behind.
    """
    folder = Path(folder)
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        for created in missing:
            with suppress(OSError):  # never made, or no longer empty
                created.rmdir()

        raise VaekitError(f"{folder}: cannot create the {what} ({e.strerror or e})") from e


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder while a command writes it, so that a second command on
    the same folder stops with a VaekitError instead of interleaving its files with the first's.

    The lock (flock) is on the folder itself: no lock file to leave behind, and the kernel releases
    it when the process ends, however it ends.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise VaekitError(
                f"{folder}: another vaekit command is writing this run folder; "
                "wait for it to end or use another -o"
            ) from e
        yield
    finally:
        os.close(fd)


def check_writable(folder: Path) -> None:
    """Write, fsync and remove a probe file in ``folder``: catches read-only folders, file
    systems and a full disk before any work is done (permission bits alone do not, e.g. for root).

    The probe's name is random, so that two commands (or threads) probing one folder at once
    never remove each other's probe.
    """
    probe = Path(folder) / f".vaekit-write-probe.{secrets.token_hex(8)}"
    atomic_write(probe, b"probe")
    probe.unlink()


#: what a path that is not a regular file is, by its ``stat.S_IFMT`` kind
FILE_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_regular(path: Path, max_bytes: int | None = None) -> BinaryIO:
    """Open ``path`` for reading in binary mode, refusing anything but a regular file of at most
    ``max_bytes`` bytes (a link is followed, and its target judged).

    A named pipe would block a reader forever and a device such as ``/dev/zero`` never ends, so
    the file is opened without blocking and judged by ``fstat`` on the open descriptor (no race
    between the check and the read). Every refusal is a one-line VaekitError naming ``path``.
    """
    flags = (
        os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise VaekitError(f"{path}: no such file") from e
    except OSError as e:
        raise VaekitError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = FILE_KINDS.get(stat.S_IFMT(info.st_mode), "of an unknown kind")
            raise VaekitError(f"{path}: is {kind}, not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise VaekitError(
                f"{path}: holds {info.st_size:,} bytes, "
                f"more than the {max_bytes:,} vaekit reads from such a file"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, of at most ``max_bytes`` (see :func:`open_regular`)."""
    with open_regular(path, max_bytes) as f:
        try:
            raw = f.read(os.fstat(f.fileno()).st_size)  # read(n) allocates n bytes first: never the maximum
            grew = f.read(1)
        except OSError as e:
            raise VaekitError(f"{path}: cannot be read ({e.strerror or e})") from e
    if grew:
        raise VaekitError(f"{path}: grew while it was read; read it again once it is complete")
    return raw


def parse_json(text: str | bytes, where: str | Path) -> Any:
    """One JSON document; anything unreadable (nesting too deep, a number of over 4300 digits,
    bytes that are not UTF-8) is a one-line VaekitError naming ``where``."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise VaekitError(f"{where}: not a readable JSON file (nested too deeply)") from e
    except ValueError as e:  # JSONDecodeError, a number of over 4300 digits, bytes not UTF-8
        raise VaekitError(f"{where}: not a readable JSON file ({e})") from e


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON lines, atomically (so a killed run never leaves half a line)."""
    atomic_write(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file such as a run's metrics; a bad line is named by its number."""
    try:
        lines = read_bytes(path, limits.MAX_JSON_BYTES).decode().splitlines()
    except UnicodeDecodeError as e:
        raise VaekitError(f"{path}: cannot be read ({e})") from e
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise VaekitError(f"{path}: line {number} is not JSON ({e.msg})") from e
        except (RecursionError, ValueError) as e:  # nested too deeply, a number of over 4300 digits
            raise VaekitError(f"{path}: line {number} is not readable JSON ({type(e).__name__})") from e
        if not isinstance(row, dict):
            raise VaekitError(f"{path}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def read_json(path: Path) -> Any:
    """The JSON document in the regular file ``path`` of at most :data:`~vaekit.limits.MAX_JSON_BYTES`."""
    return parse_json(read_bytes(path, limits.MAX_JSON_BYTES), path)


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (copied to contiguous CPU memory of their own) as a safetensors file, atomically.

    A floating-point tensor holding NaN or infinity is refused (VaekitError) and
    nothing is written, so a diverged model never replaces a good file.
    """
    # a copy each: a trainer's parameters are views of one buffer, which safetensors refuses to save
    cpu = {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format) for k, v in tensors.items()
    }
    for name, value in cpu.items():
        if _non_finite(value):
            raise VaekitError(f"{path}: not written: {name} holds NaN or infinite values")
    atomic_write(path, st_save(cpu, metadata=metadata))


def _non_finite(tensor: torch.Tensor) -> int:
    """How many NaN or infinite values ``tensor`` holds (0 unless it is floating-point)."""
    return int((~torch.isfinite(tensor)).sum()) if tensor.is_floating_point() else 0


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a truncated file) is a VaekitError."""
    return load_tensors_and_metadata(path)[0]


def load_tensors_and_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a safetensors file and the string metadata of its header.

    The bytes are parsed by safetensors alone (a JSON header and raw buffers), never
    unpickled, so a pickle renamed to ``.safetensors`` is refused, not run. A floating-point
    tensor holding NaN or infinity is refused too: :func:`save_tensors` never writes one
    (weights, optimiser moments and running sums alike), so such a file is corrupt.
    """
    raw = read_bytes(path, limits.MAX_TENSOR_FILE_BYTES)
    try:
        tensors = st_load(raw)
        (size,) = struct.unpack("<Q", raw[:8])
        metadata = json.loads(raw[8 : 8 + size]).get("__metadata__") or {}
    except (SafetensorError, ValueError, RuntimeError, struct.error) as e:
        raise VaekitError(f"{path}: not a valid safetensors file ({e})") from e
    for name, value in tensors.items():
        bad = _non_finite(value)
        if bad:
            raise VaekitError(f"{path}: tensor {name} holds {bad} NaN or infinite values")
    return tensors, metadata


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: Path, config: Path) -> None:
    """Load weights read from ``where`` into ``module`` (built from ``config``), refusing missing,
    extra or mis-shaped tensors."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    shapes = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or extra or shapes:
        raise VaekitError(
            f"{where}: weights do not match the model in {config.name} "
            f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {shapes[:3]})"
        )
    module.load_state_dict(tensors)
