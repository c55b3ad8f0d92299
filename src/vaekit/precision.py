"""Mixed precision on a GPU: the networks' matrix products in bfloat16 under autocast, the loss
and every reported number (ELBO, reconstruction, KL) in float32.

bf16 autocast is for CUDA only: on a CPU it is slower than float32 for these small layers and
changes the numbers, so asking for it there is refused with one line.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

from vaekit.errors import VaekitError

Precision = Literal["float32", "bf16"]
#: the autocast dtype of each precision (None: no autocast)
AUTOCAST = {"float32": None, "bf16": torch.bfloat16}


def check(precision: str, device: torch.device) -> None:
    """Refuse a reduced precision on a device other than CUDA."""
    if AUTOCAST[precision] is not None and device.type != "cuda":
        raise VaekitError(f"precision {precision!r} is for CUDA GPUs; on {device.type} use float32")


def autocast(precision: str, device: torch.device) -> AbstractContextManager[object]:
    """The autocast context of ``precision`` on ``device`` (a no-op for float32)."""
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
