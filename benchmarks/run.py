"""Speed of vaekit against the way pytorch/examples trains a VAE, measured in one process.

    python benchmarks/run.py            # 1 min 44 s on a quiet 2-core CPU (2026-11-24)
    python benchmarks/run.py --quick    # 1 epoch, fewer steps, fewer test digits

Prints a markdown table (paste it into benchmarks/RESULTS.md under "Speed"):

* training throughput (examples/s) of vaekit's Trainer and of a reference loop written as
  pytorch/examples ``vae/main.py`` does it: a torch DataLoader (shuffle, batch, num_workers=0
  as on CPU there) over a Dataset that turns every item into a PIL image and back, like
  torchvision's MNIST + ToTensor, and BCE on sigmoid probabilities with reduction='sum'.
  The same architecture, initialisation family, Adam 1e-3 and batch size on both sides.
* the test ELBO of both after the same epochs, and the time each takes to reach the
  reference's final test ELBO (the issue: the same math, not a smaller model);
* the float32 matmul peak measured in this run (best of repeated 2048^3 torch.mm) and the
  fraction of it training reaches, counting the matmul FLOPs of forward and backward
  (weight gradients for every layer, input gradients for every layer but the first);
* importance-sampling evaluation (``vaekit eval --k 5000``): samples/s and fraction of peak
  (decoder forward matmul FLOPs per sample; the encoder runs once per example).

Timings on a shared machine are noisy: each comparison interleaves the two sides.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Dataset

import vaekit
from vaekit.config import ModelConfig, TrainConfig
from vaekit.data import load_mnist
from vaekit.evaluate import elbo_summary, importance_log_likelihood
from vaekit.networks import VAEModule
from vaekit.train import Trainer

#: the clock of every timing: wall time, or with --clock process this process's CPU time
#: (robust to other jobs on a shared machine; use it with --threads 1, since idle OpenMP
#: threads spinning at 2+ threads count as CPU time)
CLOCK = [time.perf_counter]

# ---------------------------------------------------------------------------- the reference


class PILMNIST(Dataset):
    """MNIST as torchvision serves it: uint8 images, each item a PIL image made into a float tensor."""

    def __init__(self, images: Tensor) -> None:
        self.data = images  # (n, 28, 28) uint8

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = Image.fromarray(self.data[i].numpy(), mode="L")
        # torchvision.transforms.ToTensor on an 8-bit greyscale PIL image
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(img.size[1], img.size[0], 1)
        return x.permute(2, 0, 1).contiguous().float().div(255), 0


class ReferenceVAE(nn.Module):
    """pytorch/examples' VAE (fc1, fc21, fc22, fc3, fc4), hidden widths and activation as arguments."""

    def __init__(self, hidden: tuple[int, ...], latent: int, act: str) -> None:
        super().__init__()
        sizes = [784, *hidden]
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.fc21, self.fc22 = nn.Linear(sizes[-1], latent), nn.Linear(sizes[-1], latent)
        back = [latent, *hidden[::-1]]
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(back))
        self.fc4 = nn.Linear(back[-1], 784)
        self.act = torch.relu if act == "relu" else torch.tanh

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = x.view(-1, 784)
        for layer in self.enc:
            h = self.act(layer(h))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        for layer in self.dec:
            z = self.act(layer(z))
        return torch.sigmoid(self.fc4(z)), mu, logvar


def reference_loss(recon: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """pytorch/examples' loss_function: BCE(sum) + KLD, the negative ELBO summed over the batch."""
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reference_epoch(model: nn.Module, opt: Optimizer, loader: DataLoader, steps: int | None) -> float:
    """pytorch/examples' train(): seconds for one epoch (or its first ``steps`` steps)."""
    model.train()
    start, train_loss = CLOCK[0](), 0.0
    for i, (x, _) in enumerate(loader):
        if steps is not None and i == steps:
            break
        opt.zero_grad()
        recon, mu, logvar = model(x)
        loss = reference_loss(recon, x, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        opt.step()
    return CLOCK[0]() - start


@torch.no_grad()
def reference_test_elbo(model: nn.Module, x: Tensor) -> float:
    """pytorch/examples' test(): -(test loss) per example, nats (one eps draw, grey-level targets)."""
    model.eval()
    torch.manual_seed(0)
    total = 0.0
    for xb in x.split(1000):
        recon, mu, logvar = model(xb)
        total += float(reference_loss(recon, xb, mu, logvar))
    return -total / len(x)


# ---------------------------------------------------------------------------- FLOPs and peak


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 torch.mm throughput on this machine, GFLOP/s."""
    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = min(_timed(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    """Seconds fn() takes on the benchmark's clock."""
    start = CLOCK[0]()
    fn()
    return CLOCK[0]() - start


def layer_sizes(hidden: tuple[int, ...], latent: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(in, out) of every linear layer: encoder (with both heads), decoder."""
    sizes = [784, *hidden]
    enc = [*itertools.pairwise(sizes), (sizes[-1], 2 * latent)]
    back = [latent, *hidden[::-1], 784]
    return enc, list(itertools.pairwise(back))


def train_flops(hidden: tuple[int, ...], latent: int) -> float:
    """Matmul FLOPs per example of one training step: forward 2*in*out per layer, backward 2*in*out
    for each weight gradient and each input gradient (none for the first layer: x needs no gradient)."""
    enc, dec = layer_sizes(hidden, latent)
    macs = [a * b for a, b in enc + dec]
    return 2 * sum(macs) + 2 * sum(macs) + 2 * (sum(macs) - macs[0])


def decoder_flops(hidden: tuple[int, ...], latent: int) -> float:
    """Forward matmul FLOPs of the decoder per latent sample."""
    return 2 * sum(a * b for a, b in layer_sizes(hidden, latent)[1])


# ---------------------------------------------------------------------------- the comparisons


def vaekit_trainer(hidden, latent, act, batch, seed=0) -> Trainer:
    torch.manual_seed(seed)
    module = VAEModule(784, ModelConfig(latent_dim=latent, hidden=hidden, activation=act))
    return Trainer(module, TrainConfig(batch_size=batch, seed=seed))


def reference_setup(hidden, latent, act, batch, images, seed=0):
    torch.manual_seed(seed)
    model = ReferenceVAE(hidden, latent, act)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PILMNIST(images), batch_size=batch, shuffle=True)
    return model, opt, loader


def compare_epochs(args, data, images, peak) -> list[str]:
    """784-400-20 ReLU, batch 128: throughput, test ELBO after equal epochs, time to the reference's ELBO."""
    hidden, latent, act, batch = (400,), 20, "relu", 128
    trainer = vaekit_trainer(hidden, latent, act, batch)
    model, opt, loader = reference_setup(hidden, latent, act, batch, images)
    x_test = data.x_test[: args.test]
    t_ref, t_vk, curve_ref, curve_vk = [], [], [], []
    for _ in range(args.epochs):  # interleaved, so that both see the same machine load
        t_ref.append(reference_epoch(model, opt, loader, None))
        t_vk.append(_timed(lambda: trainer.train_epoch(data.x_train)))
        curve_ref.append(reference_test_elbo(model, x_test))
        curve_vk.append(elbo_summary(trainer.module, x_test)["elbo"])
    target = curve_ref[-1]
    reach = next((sum(t_vk[: i + 1]) for i, e in enumerate(curve_vk) if e >= target), None)
    vaekit_time = (
        f"{reach:.1f} s ({sum(t_ref) / reach:.1f}x)" if reach else f"not reached in {args.epochs} epoch(s)"
    )
    n = len(data.x_train)
    ex_ref, ex_vk = n / np.median(t_ref), n / np.median(t_vk)
    frac = ex_vk * train_flops(hidden, latent) / 1e9 / peak
    return [
        f"| 784-400-20 ReLU, batch 128 | {ex_ref:,.0f} | {ex_vk:,.0f} | **{ex_vk / ex_ref:.1f}x** "
        f"| {np.median(t_ref):.2f} / {np.median(t_vk):.2f} s per epoch "
        f"| {1e3 * batch / ex_vk:.2f} | {100 * frac:.0f}% |",
        f"\nTest ELBO after {args.epochs} epoch(s) on {len(x_test)} test digits (grey-level targets, nats): "
        f"reference {curve_ref[-1]:.2f}, vaekit {curve_vk[-1]:.2f}. Time to the reference's final test ELBO: "
        f"reference {sum(t_ref):.1f} s, vaekit {vaekit_time}.",
    ]


def compare_steps(args, data, images, peak, batch) -> str:
    """The IWAE paper's 784-200-200-50 tanh net: seconds per step over ``args.steps`` steps, both sides."""
    hidden, latent, act = (200, 200), 50, "tanh"
    steps = args.steps
    trainer = vaekit_trainer(hidden, latent, act, batch)
    model, opt, loader = reference_setup(hidden, latent, act, batch, images)
    x = data.x_train[: steps * batch]
    trainer.train_epoch(x[: 20 * batch])  # warm-up
    reference_epoch(model, opt, loader, 20)
    t_ref = reference_epoch(model, opt, loader, steps) / steps
    t_vk = _timed(lambda: trainer.train_epoch(x)) / steps
    frac = batch / t_vk * train_flops(hidden, latent) / 1e9 / peak
    return (
        f"| 784-200-200-50 tanh, batch {batch} | {batch / t_ref:,.0f} | {batch / t_vk:,.0f} "
        f"| **{t_ref / t_vk:.1f}x** | {1e3 * t_ref:.2f} / {1e3 * t_vk:.2f} ms per step "
        f"| {1e3 * t_vk:.2f} | {100 * frac:.0f}% |"
    )


def eval_throughput(args, data, peak) -> str:
    """``vaekit eval --k 5000`` on ``args.eval_n`` test digits, 784-400-20 net: samples/s, share of peak."""
    hidden, latent, k = (400,), 20, 5000
    trainer = vaekit_trainer(hidden, latent, "relu", 128)
    x = data.x_test[: args.eval_n]
    importance_log_likelihood(trainer.module, x[:1], k=k)  # warm-up
    seconds = _timed(lambda: importance_log_likelihood(trainer.module, x, k=k))
    rate = len(x) * k / seconds
    frac = rate * decoder_flops(hidden, latent) / 1e9 / peak
    return (
        f"\nImportance sampling, k = {k}, {len(x)} test digits, 784-400-20: {rate:,.0f} samples/s "
        f"({seconds:.1f} s), {100 * frac:.0f}% of peak (decoder matmul FLOPs)."
    )


def machine() -> str:
    cpu = platform.processor() or "cpu"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return (
        f"{os.cpu_count()}-core {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"vaekit {vaekit.__version__}, Python {platform.python_version()}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="1 epoch, 300 steps, 2000 test digits, 20 eval digits"
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs of the 784-400-20 comparison")
    p.add_argument("--steps", type=int, default=1000, help="timed steps of the IWAE-net comparisons")
    p.add_argument("--test", type=int, default=10000, help="test digits for the test ELBO")
    p.add_argument("--eval-n", type=int, default=100, help="test digits for the k=5000 evaluation")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--clock", choices=["wall", "process"], default="wall", help="what the timings measure")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "process":
        CLOCK[0] = time.process_time
    if args.quick:
        args.epochs, args.steps, args.test, args.eval_n = 1, 300, 2000, 20
    data = load_mnist()
    images = (data.x_train.view(-1, 28, 28) * 255).round().to(torch.uint8)
    peak = matmul_peak()
    print(
        f"{machine()}, {args.clock} clock\n"
        f"float32 matmul peak (2048^3 torch.mm, best of 10): {peak:.0f} GFLOP/s\n"
    )
    print(
        "| model | reference ex/s | vaekit ex/s | speed-up | time (reference / vaekit) "
        "| vaekit ms per step | vaekit % of peak |"
    )
    print("|---|---|---|---|---|---|---|")
    lines = compare_epochs(args, data, images, peak)
    print(lines[0], flush=True)
    for batch in (20, 100):
        print(compare_steps(args, data, images, peak, batch), flush=True)
    print(lines[1])
    print(eval_throughput(args, data, peak))
    print(
        f"\nfloat32 matmul peak after the runs: {matmul_peak():.0f} GFLOP/s (a change means the load changed)"
    )


if __name__ == "__main__":
    main()
