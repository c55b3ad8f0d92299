"""The one training loop of vaekit: minibatch AEVB over tensors held in memory.

Each epoch permutes the training rows once and takes contiguous slices as
minibatches (no per-item Python work); each step takes one optimiser step on
:func:`vaekit.objectives.training_loss` (the beta-weighted ELBO or the IWAE bound).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaekit.config import TrainConfig
from vaekit.data import binarize
from vaekit.errors import VaekitError
from vaekit.networks import VAEModule
from vaekit.objectives import ELBOTerms, training_loss

#: consecutive non-finite losses after which training stops
MAX_BAD_STEPS = 20


def make_optimizer(module: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (default) or Adagrad (the paper's) over all parameters of ``module``."""
    cls = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[config.optimizer]
    return cls(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)


class Trainer:
    """Optimises a :class:`VAEModule`; holds everything a checkpoint must restore.

    generator : seeds data order, eps and dynamic binarization, so that a run is
        reproducible on CPU given ``config.seed``.
    """

    def __init__(self, module: VAEModule, config: TrainConfig) -> None:
        self.module, self.config = module, config
        self.optimizer = make_optimizer(module, config)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0  # optimisation steps taken
        self.epoch = 0  # epochs completed
        self._bad_steps = 0

    def train_step(self, x: Tensor, y: Tensor | None = None) -> ELBOTerms:
        """One optimiser step on the minibatch x ``(m, d)``; returns the batch's detached terms."""
        cfg = self.config
        if cfg.binarize == "dynamic":
            x = binarize(x, self.generator)
        self.module.train()
        loss, terms = training_loss(self.module, x, y, cfg, self.step, self.generator)
        if not torch.isfinite(loss):
            self._bad_steps += 1
            if self._bad_steps >= MAX_BAD_STEPS:
                raise VaekitError(
                    f"the loss was not finite for {MAX_BAD_STEPS} steps in a row (step {self.step}); "
                    f"try a lower learning rate than {cfg.lr:g}"
                )
            return ELBOTerms(terms.recon.detach(), terms.kl.detach())
        self._bad_steps = 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return ELBOTerms(terms.recon.detach(), terms.kl.detach())

    def batches(self, x: Tensor, y: Tensor | None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """One epoch of minibatches: a fresh permutation, then contiguous slices."""
        perm = torch.randperm(len(x), generator=self.generator)
        x = x[perm]
        y = y[perm] if y is not None else None
        size = self.config.batch_size
        for i in range(0, len(x), size):
            yield x[i : i + size], (y[i : i + size] if y is not None else None)

    def train_epoch(self, x: Tensor, y: Tensor | None = None) -> dict[str, float]:
        """One pass over x ``(n, d)``; returns the epoch's mean train ELBO, recon and KL (nats)."""
        start = time.perf_counter()
        total = torch.zeros(3)  # sums of elbo, recon, kl
        seen = 0
        n_batches = -(-len(x) // self.config.batch_size)
        bar = tqdm(
            self.batches(x, y),
            total=n_batches,
            disable=not self.config.verbose,
            leave=False,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
        )
        for i, (xb, yb) in enumerate(bar):
            terms = self.train_step(xb, yb)
            total += torch.stack([terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()])
            seen += len(xb)
            if self.config.verbose and i % 25 == 0:
                bar.set_postfix(elbo=f"{total[0].item() / seen:.2f}")
        self.epoch += 1
        mean = (total / max(seen, 1)).tolist()
        return {
            "epoch": self.epoch,
            "step": self.step,
            "train_elbo": mean[0],
            "train_recon": mean[1],
            "train_kl": mean[2],
            "seconds": time.perf_counter() - start,
        }

    def fit(
        self,
        x: Tensor,
        y: Tensor | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``config.epochs`` epochs are done (continuing from ``self.epoch``)."""
        history = []
        while self.epoch < self.config.epochs:
            row = self.train_epoch(x, y)
            if on_epoch_end is not None:
                on_epoch_end(row)
            history.append(row)
        return history
