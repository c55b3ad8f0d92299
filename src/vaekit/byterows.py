"""8-bit data rows kept as stored, in memory or on disk in an ``.npy`` file, and turned into
float32 rows v / 255 a block at a time where they are used (a training minibatch, an evaluation chunk).

A data set of 300,000 RGB images of 64x64 is 3.7 GB as bytes and 15 GB as float32 rows: held as
:class:`ByteRows`, memory holds what a minibatch needs. The rows of a file (:class:`NpyFile`) are
read where they are needed with ``pread``, into buffers of this process: nothing of the file is
mapped, so the scattered rows of an epoch add nothing to the resident memory (their pages stay in
the kernel's page cache, which is not this process's) and no page tables are made and torn down per
minibatch. The float values are exactly those of :func:`vaekit.data.float_rows` (the same float32
division by 255).
"""

from __future__ import annotations

import hashlib
import math
import os
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaekit import limits, storage

#: rows per block of a pass over every row (digest, value range, materialising)
BLOCK_ROWS = 4096
BYTE_MAX = 255  # the value of an 8-bit white


class NpyFile:
    """The uint8 rows ``(n, d)`` stored from byte ``offset`` of an open file, read with ``pread``.

    fd : a descriptor of the file, owned from here on (closed once no rows use it)
    """

    def __init__(self, fd: int, offset: int, n: int, d: int) -> None:
        self.fd, self.offset, self.shape = fd, offset, (n, d)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # minibatch rows come in random order
        weakref.finalize(self, os.close, fd)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray | slice) -> np.ndarray:
        """A copy ``(m, d)`` of the rows at positions ``rows`` (a slice of step 1, or indices), each
        run of consecutive positions in one ``pread``, in ascending file order."""
        d = self.shape[1]
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(self))
            out = np.empty((max(0, stop - start), d), np.uint8)
            self._pread(out, start)
            return out
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ascending = rows[order]
        sorted_out = np.empty((len(rows), d), np.uint8)
        cuts = np.flatnonzero(np.diff(ascending) != 1) + 1  # where a run of consecutive rows ends
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(rows)], strict=True):
            self._pread(sorted_out[a:b], int(ascending[a]))
        out = np.empty_like(sorted_out)
        out[order] = sorted_out
        return out

    def _pread(self, out: np.ndarray, first_row: int) -> None:
        """Fill the contiguous rows ``out`` from row ``first_row`` on (a short read is read on)."""
        view, at = memoryview(out).cast("B"), self.offset + first_row * self.shape[1]
        while len(view):
            got = os.preadv(self.fd, [view], at)
            if got == 0:
                raise OSError(f"unexpected end of the data file at byte {at}")
            view, at = view[got:], at + got


class ByteRows:
    """uint8 rows ``(n, d)`` (images flattened in (C, H, W) order) standing for float32 rows v / divisor.

    array : (N, d) uint8, in memory or on disk (:class:`NpyFile`); or a uint8 tensor on a device (resident)
    rows : which rows of ``array`` these are, in order (an index view, e.g. a train split); None: all
    divisor : 255 for 8-bit pixels, 1 for binarized 0/1 values
    hwc : (H, W, C) when ``array`` holds images channels last, turned to (C, H, W) as rows are read

    It behaves as the float rows where vaekit reads data: ``len``, ``shape``, slicing and indexing
    (views), ``.to(device)`` (float32 rows on the device), :meth:`take` (a minibatch), :meth:`blocks`.
    """

    def __init__(
        self,
        array: np.ndarray | Tensor | NpyFile,
        rows: np.ndarray | None = None,
        divisor: int = BYTE_MAX,
        source: str = "data",
        hwc: tuple[int, int, int] | None = None,
    ) -> None:
        self.array, self.rows, self.divisor, self.source, self.hwc = array, rows, divisor, source, hwc
        self._scanned: tuple[str, tuple[int, int]] | None = None  # what :meth:`_scan` found

    @property
    def on_disk(self) -> bool:
        """Whether the bytes are read from a file as they are used."""
        return isinstance(self.array, NpyFile)

    # ------------------------------------------------------------------ shape and views

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.array)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), int(self.array.shape[1]))

    dtype = torch.float32  # of the rows these bytes stand for
    ndim = 2

    @property
    def nbytes(self) -> int:
        return len(self) * self.shape[1]

    def _view(self, rows: np.ndarray) -> ByteRows:
        base = self.rows[rows] if self.rows is not None else rows
        return ByteRows(self.array, base, self.divisor, self.source, self.hwc)

    def __getitem__(self, index: slice | Tensor | np.ndarray) -> ByteRows:
        """The rows ``index`` selects (a slice, or integer indices), as a view: nothing is read."""
        if isinstance(index, Tensor):
            index = index.cpu().numpy()
        return self._view(np.arange(len(self))[index])

    # ------------------------------------------------------------------ reading

    def _chw(self, v: Tensor) -> Tensor:
        """Rows ``(m, d)`` in (C, H, W) order: channels-last rows transposed."""
        if self.hwc is None:
            return v
        return v.reshape(len(v), *self.hwc).permute(0, 3, 1, 2).reshape(len(v), -1)

    def _bytes(self, index: np.ndarray | slice) -> Tensor:
        """uint8 rows ``(m, d)`` in (C, H, W) order at positions ``index`` of these rows (on the
        array's device)."""
        if isinstance(self.array, Tensor):
            rows = np.arange(len(self))[index] if self.rows is None else self.rows[index]
            return self._chw(
                self.array.index_select(0, torch.from_numpy(np.asarray(rows)).to(self.array.device))
            )
        rows = self.rows[index] if self.rows is not None else index
        if isinstance(self.array, NpyFile):
            out = self.array.read(rows)
        else:
            out = self.array[rows] if isinstance(rows, slice) else self.array[np.asarray(rows)]
        return self._chw(torch.from_numpy(out))

    def values(self, v: Tensor, device: torch.device | str | None = None) -> Tensor:
        """uint8 v ``(m, d)`` -> float32 v / divisor on ``device``, converted there.

        Divided by a tensor, not a Python number: CUDA multiplies by the reciprocal of a scalar
        divisor, which differs from the division in the last bit for some values.
        """
        v = v.to(device or v.device, non_blocking=True)
        return v.float() / torch.tensor(float(self.divisor), device=v.device)

    def take(self, idx: Tensor, device: torch.device | str | None = None) -> Tensor:
        """float32 rows ``(m, d)`` at positions idx ``(m,)`` (a minibatch), on ``device``."""
        if isinstance(self.array, Tensor):
            rows = idx if self.rows is None else self._rows_on(idx.device)[idx]
            return self.values(self._chw(self.array.index_select(0, rows.to(self.array.device))), device)
        return self.values(self._bytes(idx.cpu().numpy()), device or idx.device)

    def _rows_on(self, device: torch.device) -> Tensor:
        """The index view's rows as a tensor on ``device`` (made once)."""
        if getattr(self, "_rows_tensor", None) is None or self._rows_tensor.device != device:
            self._rows_tensor = torch.from_numpy(self.rows).to(device)
        return self._rows_tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Tensor:
        """All these rows as float32 on ``device``, as a float tensor's ``.to`` would give them."""
        limits.check_data(self.source, self.nbytes, 4 * self.nbytes, "would hold as float32 rows")
        return self.values(
            self._bytes(slice(None)) if self.rows is None else self._bytes(np.arange(len(self))), device
        )

    def numpy(self) -> np.ndarray:
        """All these rows as a float32 array ``(n, d)``."""
        return self.to("cpu").numpy()

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return self.numpy() if dtype is None else self.numpy().astype(dtype)

    def blocks(self, size: int = BLOCK_ROWS) -> Iterator[Tensor]:
        """The uint8 rows in consecutive blocks of ``size`` ``(m, d)``, read one block at a time."""
        for i in range(0, len(self), size):
            index = slice(i, i + size) if self.rows is None else np.arange(i, min(i + size, len(self)))
            yield self._bytes(index).cpu()

    def resident(self, device: torch.device, free_fraction: float = 0.5) -> ByteRows:
        """These rows with their bytes moved to a CUDA ``device`` once, when they take at most
        ``free_fraction`` of its free memory; else (or on a CPU) as they are."""
        if device.type != "cuda" or isinstance(self.array, Tensor):
            return self
        free, _ = torch.cuda.mem_get_info(device)
        if self.nbytes > free_fraction * free:
            return self
        on_device = torch.cat([b.to(device) for b in self.blocks()])
        return ByteRows(on_device, None, self.divisor, self.source)  # blocks are (C, H, W) rows

    # ------------------------------------------------------------------ summaries

    def _scan(self) -> tuple[str, tuple[int, int]]:
        """The digest and the (smallest, largest) stored byte, from one pass over every byte (made
        once: ``vaekit train`` asks for both before training, and a pass over a large file is slow)."""
        if self._scanned is None:
            h = hashlib.sha256(f"uint8/{self.divisor}:{self.shape[1]}:".encode())
            lo, hi = BYTE_MAX, 0
            for block in self.blocks():
                h.update(block.numpy().tobytes())
                lo, hi = min(lo, int(block.min())), max(hi, int(block.max()))
            self._scanned = h.hexdigest(), (lo, hi)
        return self._scanned

    def digest(self) -> str:
        """SHA-256 of the stored bytes and the divisor: what a run records to know its data again."""
        return self._scan()[0]

    def float_digest(self) -> str:
        """SHA-256 of the float32 rows: :func:`vaekit.runs.digest` of :meth:`to` (runs of old versions)."""
        h = hashlib.sha256()
        for block in self.blocks():
            h.update(self.values(block).numpy().tobytes())
        return h.hexdigest()

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the float values (found with the digest, in one pass over the bytes)."""
        lo, hi = self._scan()[1]
        return lo / self.divisor, hi / self.divisor

    def levels_present(self) -> Tensor:
        """float32 values ``(1, k)`` of every level from the smallest to the largest stored: a row
        that holds each value these rows may hold, for checking a likelihood's support."""
        lo, hi = self.value_range()
        v = torch.arange(round(lo * self.divisor), round(hi * self.divisor) + 1, dtype=torch.uint8)
        return self.values(v[None])

    def binarized(self, generator: torch.Generator) -> ByteRows:
        """One Bernoulli draw per value with P(1) = value, block by block, kept as 0/1 bytes in memory."""
        draws = [torch.bernoulli(self.values(b), generator=generator).to(torch.uint8) for b in self.blocks()]
        return ByteRows(torch.cat(draws).numpy(), None, 1, self.source)


def gather(x: Tensor | ByteRows, idx: Tensor) -> Tensor:
    """Rows idx ``(m,)`` of x ``(n, d)`` as float32 ``(m, d)`` on idx's device (a training minibatch)."""
    if isinstance(x, ByteRows):
        return x.take(idx, idx.device)
    return x.index_select(0, idx)  # index_select: 2-3x faster than x[idx] (a general gather)


def on_device(x: Tensor | ByteRows, device: torch.device) -> Tensor | ByteRows:
    """x where training reads it: a tensor moved to ``device``; byte rows resident there when they fit."""
    return x.resident(device) if isinstance(x, ByteRows) else x.to(device)


def open_npy(path: Path) -> tuple[ByteRows, tuple[int, int, int] | None] | None:
    """An ``.npy`` file of uint8 rows (N, D) or images (N, H, W) or (N, H, W, C) with C in 1, 3, 4
    (as :func:`vaekit.data.as_rows` reads them), read from disk as used: the rows and their (C, H, W) shape
    (None for rows). None for any other dtype or layout, which the caller reads as before.

    The header is checked against the file's size and :data:`vaekit.limits.MAX_MAPPED_BYTES` first.
    """
    with storage.open_regular(path, limits.MAX_MAPPED_BYTES + 2**20) as f:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            return None
        shape, fortran, dtype = readers[version](f)
        offset, size = f.tell(), os.fstat(f.fileno()).st_size
        if (
            dtype != np.uint8
            or fortran
            or len(shape) not in (2, 3, 4)
            or (len(shape) == 4 and shape[3] not in (1, 3, 4))
        ):
            return None
        nbytes = math.prod(shape)
        if nbytes == 0 or nbytes > size - offset:
            return None  # the caller's reader says what is wrong
        limits.check_mapped(path, nbytes)
        array = NpyFile(os.dup(f.fileno()), offset, shape[0], nbytes // shape[0])
    if len(shape) == 2:
        return ByteRows(array, source=str(path)), None
    h, w, c = (*shape[1:3], shape[3] if len(shape) == 4 else 1)
    hwc = (h, w, c) if c > 1 else None
    return ByteRows(array, source=str(path), hwc=hwc), (c, h, w)
