"""The memory layout of image batches inside the convolutional networks: channels-last on CUDA.

cuDNN's convolutions run fastest on channels-last tensors (NHWC strides), with tensor cores under
bf16 autocast (:mod:`vaekit.precision`) most of all. A convolution whose input is channels-last
runs its channels-last kernel and returns a channels-last output, so converting the batch once,
where the networks turn rows into images, keeps every following convolution, activation and
residual sum in that layout. The weights stay where the trainer keeps them, in its one flat
buffer (:mod:`vaekit.flat`); PyTorch takes them in the input's layout. The values are the same
functions of the same weights: only the order of the numbers in memory changes (and with it,
on a GPU, the summation order inside a convolution, at float32 rounding level). On a CPU the
contiguous NCHW layout of earlier versions is kept (channels-last there has not been measured).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: the device types on which image batches are made channels-last
CHANNELS_LAST_DEVICES: frozenset[str] = frozenset({"cuda"})


def images(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Rows or maps ``(..., C*H*W)`` as a batch of images ``(n, C, H, W)`` for ``shape = (C, H, W)``;
    channels-last on the devices of :data:`CHANNELS_LAST_DEVICES`."""
    batch = x.reshape(-1, *shape)
    if batch.device.type in CHANNELS_LAST_DEVICES:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
