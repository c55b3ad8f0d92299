"""vaekit against pytorch/examples' VAE loop with torchvision's own MNIST and ToTensor, in one process.

benchmarks/run.py writes its reference Dataset by hand (torchvision does not import beside the
torch 2.13.0 CPU build). This script needs torchvision, so it runs in a separate environment, e.g.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tv/bin/pip install -e . && /tmp/tv/bin/python benchmarks/torchvision_reference.py

It writes the packaged MNIST as the raw IDX files torchvision reads, then interleaves epochs of
the reference (torchvision.datasets.MNIST + transforms.ToTensor, DataLoader batch 128 shuffled,
sigmoid + BCE(sum) + KLD, Adam 1e-3) and of vaekit's Trainer on the same 784-400-20 model, and
prints seconds per epoch and their ratio.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch
from run import ReferenceVAE, machine, reference_epoch, vaekit_trainer
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from vaekit.data import load_mnist


def torchvision_mnist(root: Path) -> datasets.MNIST:
    """torchvision's MNIST training set over the packaged files (gunzipped where it looks for them)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for kind in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        name = f"{kind}-ubyte"
        packaged = resources.files("vaekit") / "datasets" / "mnist" / f"{name}.gz"
        (raw / name).write_bytes(gzip.decompress(packaged.read_bytes()))
    return datasets.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    data = load_mnist()
    trainer = vaekit_trainer((400,), 20, "relu", 128)
    torch.manual_seed(0)
    model = ReferenceVAE((400,), 20, "relu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as tmp:
        loader = DataLoader(torchvision_mnist(Path(tmp)), batch_size=128, shuffle=True)
        for epoch in range(1, args.epochs + 1):
            t_ref = reference_epoch(model, opt, loader, None)
            start = time.perf_counter()
            trainer.train_epoch(data.x_train)
            t_vk = time.perf_counter() - start
            print(
                f"epoch {epoch}: torchvision reference {t_ref:.2f} s, vaekit {t_vk:.2f} s, "
                f"ratio {t_ref / t_vk:.1f}x"
            )


if __name__ == "__main__":
    main()
