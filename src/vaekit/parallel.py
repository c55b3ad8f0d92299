"""Where training runs: the torch device, and the process group under ``torchrun``.

``torchrun --nproc_per_node N -m vaekit train ...`` starts N processes with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; :func:`process_group`
joins them (gloo on CPU, NCCL on CUDA). Without those variables everything is a
single process of rank 0.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from vaekit.errors import VaekitError


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' or 'auto' (cuda when available) -> a torch.device; under torchrun, cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise VaekitError("device 'cuda' was asked for but torch finds no CUDA GPU; use --device cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(name)


def process_group(device: torch.device) -> tuple[int, int]:
    """(rank, world size): joins the torchrun process group if WORLD_SIZE > 1, else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank() -> int:
    """This process's rank (0 when not launched by torchrun): only rank 0 writes files."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """The number of processes of this torchrun job (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard(m: int, rank: int, world: int) -> slice:
    """Rows of a global minibatch of m rows that process ``rank`` of ``world`` takes.

    Contiguous, sizes differing by at most one (the first ``m % world`` ranks take one more),
    so that the shards in rank order are the whole batch.
    """
    base, extra = divmod(m, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def leave_process_group() -> None:
    """Tear down the torchrun process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
